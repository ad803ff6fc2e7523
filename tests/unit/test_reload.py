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
