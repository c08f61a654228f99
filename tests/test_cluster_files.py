"""The deployment files stay in step with the package: cluster.yaml is a valid Ray cluster
config naming the image that docker/README.md builds, and docker/Dockerfile installs Ray's
and pyproject's versions of everything. No Docker or cloud needed: these read files."""
from __future__ import annotations

import copy
import json
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKER_README = ROOT / "docker" / "README.md"
CLUSTER_YAML = ROOT / "cluster.yaml"
PYPROJECT = ROOT / "pyproject.toml"
RAY_SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"

# Installed in the image on top of pyproject's dependencies, each for a stated reason:
# psycopg2-binary: the driver for `--set storage=postgresql://...` (see cluster.yaml).
# pytest: `make gpu-check` runs the `gpu`-marked tests in the image.
IMAGE_ONLY = {"psycopg2-binary>=2.9", "pytest>=7"}

# pip options that take a value (the value is not a requirement)
_PIP_VALUE_OPTS = {"-c", "--constraint", "-r", "--requirement", "-i", "--index-url",
                   "--extra-index-url", "-f", "--find-links", "--cache-dir", "-t", "--target",
                   "--prefix", "--root", "--platform", "--python-version", "--progress-bar"}


# ---- parsing helpers -----------------------------------------------------------------------
def load_cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def ray_schema() -> dict:
    return json.loads(RAY_SCHEMA.read_text())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):     # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        op, _, args = buf.partition(" ")
        out.append((op.upper(), args.strip()))
        buf = ""
    assert not buf, "Dockerfile ends inside a continued line"
    return out


def dockerfile_requirements() -> list[str]:
    """Every requirement string given to a `pip install` in a RUN instruction."""
    reqs = []
    for op, args in dockerfile_instructions():
        if op != "RUN":
            continue
        lexer = shlex.shlex(args, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        command: list[str] = []
        for word in [*lexer, ";"]:                # split the shell line at && ; || | ( )
            if word and set(word) <= set("&;|()"):
                for i in range(len(command) - 1):
                    if command[i].endswith("pip") and command[i + 1] == "install":
                        reqs += _requirement_words(command[i + 2:])
                        break
                command = []
            else:
                command.append(word)
    return reqs


def _requirement_words(words: list[str]) -> list[str]:
    reqs, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif w in _PIP_VALUE_OPTS:
            skip = True
        elif w.startswith("-") or w in (".", "./") or w.startswith(("/", "./", "$")):
            continue
        else:
            reqs.append(w)
    return reqs


def normalized(reqs) -> set[tuple]:
    """(canonical name, extras, specifiers, marker): equal for equal requirements."""
    out = set()
    for r in map(Requirement, reqs):
        out.add((canonicalize_name(r.name), tuple(sorted(r.extras)),
                 tuple(sorted(str(s) for s in r.specifier)), str(r.marker or "")))
    return out


def pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text())


def base_image() -> str:
    froms = [args for op, args in dockerfile_instructions() if op == "FROM"]
    assert len(froms) == 1, f"expected one FROM in {DOCKERFILE}, got {froms}"
    return froms[0].split()[0]


def readme_build_tag() -> str:
    """The tag of docker/README.md's build command: the one source of truth for the image."""
    tags = re.findall(r"docker build -f docker/Dockerfile -t (\S+) \.", DOCKER_README.read_text())
    assert len(tags) == 1, f"expected one `docker build -f docker/Dockerfile -t TAG .` in " \
                           f"{DOCKER_README}, got {tags}"
    return tags[0]


# ---- cluster.yaml against Ray's own schema -------------------------------------------------
def test_ray_ships_the_cluster_schema():
    assert RAY_SCHEMA.is_file(), f"{RAY_SCHEMA} missing: Ray moved its cluster schema"
    assert "available_node_types" in ray_schema()["properties"]


def test_cluster_yaml_validates_against_rays_schema():
    jsonschema.validate(load_cluster(), ray_schema())


@pytest.mark.parametrize("breakage", ["max_workers", "unknown_key", "docker_key", "gpu_str"])
def test_a_broken_cluster_yaml_fails_the_schema(breakage):
    cfg = copy.deepcopy(load_cluster())
    if breakage == "max_workers":
        cfg["max_workers"] = "many"
    elif breakage == "unknown_key":
        cfg["gpu_workers"] = 4
    elif breakage == "docker_key":
        cfg["docker"]["imgae"] = cfg["docker"]["image"]
    else:
        cfg["available_node_types"][cfg["head_node_type"]]["resources"]["GPU"] = "none"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cfg, ray_schema())


def test_cluster_yaml_node_types():
    """What the schema cannot say: a CPU head that is a declared type, GPU workers, and a
    global max_workers that holds every type's min_workers (Ray's own extra checks)."""
    cfg = load_cluster()
    types = cfg["available_node_types"]
    head = cfg["head_node_type"]
    assert head in types, f"head_node_type {head!r} not in {sorted(types)}"
    assert types[head]["resources"].get("GPU", 0) == 0, "the head node must be CPU-only"
    workers = {n: t for n, t in types.items() if n != head}
    gpu = [n for n, t in workers.items() if t["resources"].get("GPU", 0) >= 1]
    assert gpu, f"no worker node type with a GPU among {sorted(workers)}"
    assert all(types[n].get("max_workers", 0) >= 1 for n in gpu)
    assert sum(t.get("min_workers", 0) for t in workers.values()) <= cfg["max_workers"]
    assert cfg["provider"]["type"] == "aws"


def test_cluster_yaml_starts_ray_in_the_image():
    cfg = load_cluster()
    docker = cfg["docker"]
    assert docker["container_name"] and docker["pull_before_run"] is True
    assert any("nofile" in o for o in docker["run_options"])
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])
    assert any("ray start --address=$RAY_HEAD_IP" in c for c in cfg["worker_start_ray_commands"])


def test_the_image_holds_what_make_gpu_check_runs():
    copied = " ".join(args for op, args in dockerfile_instructions() if op == "COPY")
    for needed in ("Makefile", "ktg_search", "tests"):
        assert re.search(rf"(^|\s){needed}(\s|$)", copied), f"the image lacks {needed}"
    assert "gpu-check:" in (ROOT / "Makefile").read_text()
    assert normalized(["pytest>=7"]) <= normalized(dockerfile_requirements())


# ---- one image tag everywhere --------------------------------------------------------------
def test_cluster_yaml_runs_the_image_the_readme_builds():
    tag = readme_build_tag()
    assert load_cluster()["docker"]["image"] == tag
    assert f"docker push {tag}" in DOCKER_README.read_text()


def test_image_tag_is_the_package_version():
    tag = readme_build_tag()
    name, _, version = tag.rpartition(":")
    assert name.endswith("/ktg-search"), tag
    assert version == pyproject()["project"]["version"], \
        f"image tag {tag} but the package is {pyproject()['project']['version']}"


# ---- the Dockerfile against pyproject and the installed Ray --------------------------------
def test_dockerfile_installs_pyprojects_dependencies():
    deps = pyproject()["project"]["dependencies"]
    got = normalized(dockerfile_requirements())
    want = normalized(deps) | normalized(IMAGE_ONLY)
    assert got == want, (f"Dockerfile pip installs differ from pyproject.toml: "
                         f"missing {sorted(want - got)}, extra {sorted(got - want)}")


def test_dependency_comparison_can_fail():
    deps = pyproject()["project"]["dependencies"]
    changed = [d.replace("<2.15", "<2.16") if d.startswith("torch>") else d for d in deps]
    assert changed != deps
    assert normalized(changed) != normalized(deps)
    assert normalized(["Torch_Fidelity>=0.3"]) == normalized(["torch-fidelity>=0.3"])
    assert _requirement_words(["--no-cache-dir", "-c", "/tmp/pin.txt", "--extra-index-url",
                               "${URL}", "a>=1", "--no-deps", "."]) == ["a>=1"]


def test_dockerfile_base_image_is_the_installed_ray():
    image = base_image()
    m = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d+)-cu(\d+)", image)
    assert m, f"base image {image!r} is not rayproject/ray:<version>-py<NN>-cu<NNN>"
    assert m.group(1) == ray.__version__, \
        f"base image has Ray {m.group(1)}, the package is tested with Ray {ray.__version__}"
    assert m.group(2) == "311"


def test_dockerfile_caches_and_entrypoint():
    text = DOCKERFILE.read_text()
    assert "KTG_CACHE=/home/ray/.cache/ktg-search" in text
    assert re.search(r"TORCH_HOME=/home/ray/\.cache/\S+", text)
    ops = {op for op, _ in dockerfile_instructions()}
    assert not ops & {"ENTRYPOINT", "CMD"}, "keep the base image's entrypoint for ray start"
    copied = " ".join(args for op, args in dockerfile_instructions() if op == "COPY")
    for path in ("pyproject.toml", "README.md", "ktg_search", "trainables"):
        assert path in copied, f"the Dockerfile does not COPY {path}"


# ---- the study's storage on the cluster ----------------------------------------------------
def cluster_search_commands() -> list[list[str]]:
    """The `ktg search` commands that cluster.yaml's comments tell the user to run, as
    argument lists (continued lines joined)."""
    cmds, buf = [], None
    for line in CLUSTER_YAML.read_text().splitlines():
        text = line.lstrip("#").strip()
        if buf is None and text.startswith("ktg search "):
            buf = ""
        if buf is None:
            continue
        buf += text.rstrip("\\") + " "
        if not text.endswith("\\"):
            cmds.append(shlex.split(buf)[1:])
            buf = None
    return cmds


def search_storage(argv: list[str]) -> str | None:
    """The study storage a `ktg search` command line sets (parsed by ktg's own parser)."""
    from ktg_search.cli import build_parser
    args = build_parser().parse_args(argv)
    sets = dict(s.partition("=")[::2] for s in args.set or [])
    return sets.get("storage")


def test_cluster_yaml_puts_the_study_in_postgresql():
    """The head-node command cluster.yaml gives sets the study's storage to PostgreSQL,
    which opens with the driver the image installs (psycopg2), and the comment says what
    a resume needs and where the costs are."""
    from ktg_search.search.study import sqlalchemy_url
    cmds = cluster_search_commands()
    assert len(cmds) == 1, cmds
    storage = search_storage(cmds[0])
    assert storage and storage.startswith("postgresql://"), \
        f"cluster.yaml's search command keeps the study in {storage or 'SQLite'!r}"
    assert sqlalchemy_url(storage).startswith("postgresql+psycopg2://")
    assert normalized(["psycopg2-binary>=2.9"]) <= normalized(dockerfile_requirements())
    text = CLUSTER_YAML.read_text()
    assert "--set storage=journal:/" in text  # the alternative without a database
    assert "--allow-external-storage" in text and "docs/cluster-storage.md" in text
    assert (ROOT / "docs" / "cluster-storage.md").is_file()


def test_the_storage_check_can_fail():
    assert search_storage(["search", "--preset", "quick"]) is None
    assert search_storage(["search", "--set", "storage=journal:/x/optuna.log",
                           "--set", "seed=1"]) == "journal:/x/optuna.log"
