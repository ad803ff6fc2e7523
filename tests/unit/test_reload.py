"""The reload line of --watch: which files changed, relative to the function's code."""

from __future__ import annotations


def test_reload_lines_name_the_files_relative_to_their_root(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rie.dev.reload import describe

    root = str(tmp_path)
    (tmp_path / "app.py").write_text("")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("")
    gone = str(tmp_path / "sedTMP")  # an editor's temporary file, already renamed away
    paths = [str(tmp_path / "app.py"), gone, gone, str(tmp_path / "pkg" / "mod.py")]
    assert describe(paths, [root]) == "app.py, pkg/mod.py"
    assert describe([gone], [root]) == "sedTMP"
    many = [str(tmp_path / f"f{i}.py") for i in range(5)]
    for path in many:
        open(path, "w").close()
    assert describe(many, [root]) == "f0.py, f1.py, f2.py and 2 more"


def test_a_burst_of_changes_is_one_flush_after_the_quiet_window() -> None:
    import asyncio

    from rie.dev import reload

    async def main() -> list[list[str]]:
        flushed: list[list[str]] = []
        got = asyncio.Event()

        def flush(paths: list[str]) -> None:
            flushed.append(paths)
            got.set()

        burst = reload.Burst(flush)
        for name in ("a", "b", "c"):
            burst.add([name])
            await asyncio.sleep(0)  # well within the quiet window
        burst.add([])  # nothing changed: the window is not pushed back
        await asyncio.wait_for(got.wait(), 10)
        got.clear()
        burst.add(["d"])
        await asyncio.wait_for(got.wait(), 10)
        return flushed

    assert asyncio.run(main()) == [["a", "b", "c"], ["d"]]


def test_changes_that_never_pause_are_flushed_after_the_debounce_limit(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from rie.dev import reload

    monkeypatch.setattr(reload, "DEBOUNCE_MS", 100)

    async def main() -> int:
        flushed: list[list[str]] = []
        burst = reload.Burst(flushed.append)
        n = 0
        while not flushed:  # a change every 10 ms, never quiet for 40 ms
            n += 1
            burst.add([str(n)])
            await asyncio.sleep(0.01)
            assert n < 1000, "never flushed"
        burst.cancel()
        return len(flushed[0])

    assert asyncio.run(main()) >= 2


def test_names_left_out_are_those_watchfiles_leaves_out() -> None:
    from rie.dev.reload import ignored

    for name in ("__pycache__", ".git", "x.pyc", ".app.py.swp", "app.py~", ".#app.py"):
        assert ignored(name), name
    for name in ("app.py", "template.yaml", "data.json", "pkg"):
        assert not ignored(name), name
