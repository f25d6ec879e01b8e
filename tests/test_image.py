"""The container image for `provider: local`, without Docker (no daemon here): the
Dockerfile's own steps run in a fresh virtualenv against a pre-filled model cache, then the
Lambda handler runs in what they built. What cannot run here: the base image itself, and a
download from the Hub (the cache is filled by the tests, as HF_HUB_OFFLINE=1 says).

Installing torch and the extra into a fresh virtualenv takes a couple of minutes: the test
goes first (`conftest.py`), so that one worker runs it while the other runs the rest."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"
# On this project's machines a CPU build of torch lies on disk; the image takes it from
# PyTorch's CPU index instead (no network reaches it here).
TORCH_HERE = "torch==2.13.0"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, rest = line.partition(" ")
            steps.append((name.upper(), rest.strip()))
    return steps


class Build:
    """The Dockerfile's steps, run here: COPY into a task root, RUN in a fresh venv."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hf-run-job-image-"))
        self.task_root, self.venv = self.root / "task", self.root / "venv"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HUGGINGFACE", "HF_"))}
        env.update(
            PATH=f"{self.venv / 'bin'}{os.pathsep}{env['PATH']}",
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            LAMBDA_TASK_ROOT=str(self.task_root),
        )
        self.env = env
        self.arguments: dict[str, str] = {}
        self.ran: list[tuple[str, subprocess.CompletedProcess]] = []
        self.steps = instructions()

    def run(self, cache: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        # The models come from the tests' cache: no hub is reached.
        self.env.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
        for name, rest in self.steps:
            self._step(name, rest)

    def _step(self, name: str, rest: str) -> None:
        if name == "ARG":
            key, _, default = rest.partition("=")
            self.arguments[key] = TORCH_HERE if key == "TORCH_PIP" else default.strip('"')
        elif name == "ENV":
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', rest):
                self.env[key] = value.strip('"')
        elif name == "WORKDIR":
            assert rest == "${LAMBDA_TASK_ROOT}"
            self.task_root.mkdir()
        elif name == "COPY":
            *sources, target = rest.split()
            for source in sources:
                name_there = Path(source).name if target.endswith("/") else ""
                copy = shutil.copytree if (ROOT / source).is_dir() else shutil.copy
                copy(ROOT / source, self.task_root / target / name_there)
        elif name == "RUN":
            command = re.sub(r"\$\{(\w+)\}", lambda m: self.arguments[m.group(1)], rest)
            # pip's cache serves the packages the test environment already fetched.
            command = command.replace("--no-cache-dir ", "")
            done = subprocess.run(
                command,
                shell=True,
                cwd=self.task_root,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            self.ran.append((command, done))


@pytest.fixture
def build() -> Iterator[Build]:
    """A build, removed afterwards: its environment is over a gigabyte (torch)."""
    made = Build()
    yield made
    shutil.rmtree(made.root, ignore_errors=True)


def test_the_dockerfile_s_steps_build_an_environment_where_the_handler_runs(local_models, build):
    assert build.steps[0] == ("FROM", "public.ecr.aws/lambda/python:3.12")
    assert build.steps[-1] == ("CMD", '["handler.lambda_handler"]')
    build.run(local_models)
    commands = [command for command, _ in build.ran]
    assert commands[0] == f"pip install {TORCH_HERE}"
    assert commands[-1] == "python -m function fetch-models"
    assert "ok       sentence-transformers/all-MiniLM-L6-v2" in build.ran[-1][1].stdout

    # The handler, as the image's CMD runs it, on the local demo's run config.
    probe = (
        "import json, handler\n"
        "class Context:\n"
        "    aws_request_id = 'image-test'\n"
        "    function_name = 'hf-run-job'\n"
        "    memory_limit_in_mb = 2048\n"
        "    invoked_function_arn = 'arn:aws:lambda:us-east-1:1:function:hf-run-job'\n"
        "    def get_remaining_time_in_millis(self): return 60_000\n"
        "print(json.dumps(handler.lambda_handler({'run_config': 'local-demo'}, Context())))\n"
    )
    env = {**build.env, "RESULTS_URI": str(build.root / "runs")}
    done = subprocess.run(
        [str(build.venv / "bin" / "python"), "-c", probe],
        cwd=build.task_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    envelope = json.loads(done.stdout.strip().splitlines()[-1])
    assert envelope["success"], envelope["error"]
    assert len(envelope["result"]) == 3 and envelope["model"].endswith("all-MiniLM-L6-v2")
