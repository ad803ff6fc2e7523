"""The sandbox's settings (flag, RIE_SANDBOX, TOML, SAM) and what a memory size buys (pure)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from rie.sandbox.limits import CFS_PERIOD_US, MB, cpu_share, quotas
from rie.settings.config import load
from rie.settings.errors import ConfigError
from rie.settings.load import load_all

CMD = ["--", sys.executable, "-c", "pass"]


def test_default_is_lambda_and_rie_sandbox_sets_the_default() -> None:
    assert load(CMD, {}).sandbox == "lambda"
    assert load(CMD, {"RIE_SANDBOX": "off"}).sandbox == "off"
    assert load(["--sandbox", "lambda", *CMD], {"RIE_SANDBOX": "off"}).sandbox == "lambda"
    with pytest.raises(ConfigError, match="RIE_SANDBOX"):
        load(CMD, {"RIE_SANDBOX": "strict"})


def test_ephemeral_storage_is_512_to_10240() -> None:
    assert load(CMD, {}).ephemeral_storage_mb == 512
    assert load(["--ephemeral-storage", "10240", *CMD], {}).ephemeral_storage_mb == 10240
    for bad in ("511", "10241"):
        with pytest.raises(ConfigError, match="ephemeral storage must be 512-10240 MB"):
            load(["--ephemeral-storage", bad, *CMD], {})


def test_toml_and_sam_set_them_per_function(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "rie.toml").write_text(
        textwrap.dedent(
            """
            [functions.one]
            handler = "app.handler"
            task_root = "code"
            sandbox = "off"
            ephemeral_storage = 2048
            [functions.two]
            handler = "app.handler"
            task_root = "code"
            """
        )
    )
    one, two = load_all(["--config", str(tmp_path / "rie.toml")], {})
    assert (one.sandbox, one.ephemeral_storage_mb) == ("off", 2048)
    assert (two.sandbox, two.ephemeral_storage_mb) == ("lambda", 512)
    (tmp_path / "template.yaml").write_text(
        textwrap.dedent(
            """
            Resources:
              F:
                Type: AWS::Serverless::Function
                Properties:
                  CodeUri: code
                  Handler: app.handler
                  EphemeralStorage: {Size: 4096}
            """
        )
    )
    (f,) = load_all(["--template", str(tmp_path / "template.yaml")], {})
    assert f.ephemeral_storage_mb == 4096
    with pytest.raises(ConfigError, match="sandbox"):
        (tmp_path / "bad.toml").write_text(
            '[functions.x]\nhandler = "a.b"\ntask_root = "code"\nsandbox = "strict"\n'
        )
        load_all(["--config", str(tmp_path / "bad.toml")], {})


def test_a_memory_size_buys_lambdas_share_of_cpu() -> None:
    assert cpu_share(1769) == 1.0
    assert cpu_share(128) == pytest.approx(0.0724, abs=1e-4)
    assert cpu_share(10240) == pytest.approx(10240 / 1769) and cpu_share(10240) <= 6.0
    q = quotas(128, machine_cpus=2)
    assert q.memory_bytes == 128 * MB and q.pids == 1024 and q.nofile == 1024
    assert q.cpu_quota_us == round(128 / 1769 * CFS_PERIOD_US) and q.cpu_quota_us >= 1000
    assert q.measurable
    assert quotas(1769, 2).cpu_quota_us == CFS_PERIOD_US
    # never more than the machine: a whole-machine share needs no quota, and is not measurable
    big = quotas(10240, machine_cpus=2)
    assert big.cpu_quota_us is None and not big.measurable and big.cpus > 5
    assert quotas(512, 2, ephemeral_mb=1024).ephemeral_bytes == 1024 * MB


def test_the_harness_takes_sandbox() -> None:
    from rie.testing import rie_arguments

    assert rie_arguments("app.handler", sandbox="off")[-2:] == ["--sandbox", "off"]
    assert "--sandbox" not in rie_arguments("app.handler")
