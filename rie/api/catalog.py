"""How the functions' configs look through Lambda's control-plane reads: ListFunctions,
GetFunction and GetFunctionConfiguration, in the shapes botocore's service model declares.

Pure: a Config in, a JSON-ready dict out. Nothing here is on the invoke path; the one piece of I/O
(sizing the code directory for CodeSize and CodeSha256) runs only when a caller asks.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import sys
import time

from rie.settings.config import RUNTIME_ENTRY, Config

_LOADED_AT = time.time()
_ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
_WALK_LIMIT = 20_000  # files looked at for CodeSize; a task root such as `/` must not stall


def runtime_of(config: Config) -> str:
    """The Runtime identifier: the configured one (SAM's `Runtime`), else what the command says."""
    if config.runtime:
        return config.runtime
    if config.command[-1:] == (RUNTIME_ENTRY,) or "awslambdaric" in config.command:
        return f"python{sys.version_info.major}.{sys.version_info.minor}"
    return "provided.al2023"


def _lambda_time(epoch: float) -> str:
    """`2026-11-26T03:04:05.000+0000`, the format of LastModified."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(epoch))


def code_size_and_sha(task_root: str) -> tuple[int, str]:
    """Bytes under the task root, and a digest that changes when any file does (Lambda's
    CodeSha256 is of the zip; there is no zip here, so it covers names, sizes and times)."""
    size = 0
    digest = hashlib.sha256()
    seen = 0
    for root, dirs, files in os.walk(task_root):
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", ".git", ".venv"))
        for name in sorted(files):
            seen += 1
            if seen > _WALK_LIMIT:
                break
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            size += st.st_size
            digest.update(f"{root}/{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return size, base64.b64encode(digest.digest()).decode()


def function_configuration(config: Config, with_code: bool = True) -> dict[str, object]:
    """The FunctionConfiguration structure of one function."""
    size, sha = code_size_and_sha(config.task_root) if with_code else (0, "")
    arch = _ARCHITECTURES.get(platform.machine().lower(), platform.machine())
    doc: dict[str, object] = {
        "FunctionName": config.function_name,
        "FunctionArn": config.function_arn,
        "Runtime": runtime_of(config),
        "Role": f"arn:aws:iam::{config.account_id}:role/rie-local",
        "Handler": config.handler,
        "CodeSize": size,
        "Description": config.description,
        "Timeout": max(1, round(config.timeout_s)),
        "MemorySize": config.memory_mb,
        "LastModified": _lambda_time(_LOADED_AT),
        "CodeSha256": sha,
        "Version": config.function_version,
        "Environment": {"Variables": dict(config.user_env)},
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": hashlib.sha256(repr(config).encode()).hexdigest()[:32],
        "Layers": [{"Arn": path, "CodeSize": 0} for path in config.layers],
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": [arch],
        "EphemeralStorage": {"Size": 512},
        "LoggingConfig": {
            "LogFormat": "JSON"
            if config.user_env.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"
            else "Text",
            "LogGroup": config.log_group_name,
        },
    }
    return doc


def get_function(config: Config) -> dict[str, object]:
    """The GetFunction answer: the configuration, where the code is, and concurrency."""
    return {
        "Configuration": function_configuration(config),
        "Code": {"RepositoryType": "Local", "Location": f"file://{config.task_root}"},
        "Concurrency": {"ReservedConcurrentExecutions": config.max_concurrency},
        "Tags": {},
    }
