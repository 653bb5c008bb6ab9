"""Golden fixtures: tensors and data made from the reference, stored in safetensors.

`fixtures/recipes/weekN/<kata>.py` defines `build(reference) -> dict`: values are tensors
(stored as they are) or JSON-able data (stored in the file's metadata under "json").
`reference("weekN.kata")` hands the recipe a reference module. Recipes seed their own
generators, so regeneration is byte-identical; `fixtures/manifest.json` records each file's
sha256 and the recipe that made it, and `kata fixtures --check` verifies both.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from . import impl

FIXTURES_DIR = impl.PROJECT_ROOT / "fixtures"
RECIPES_DIR = FIXTURES_DIR / "recipes"
MANIFEST = FIXTURES_DIR / "manifest.json"
_cache: dict[str, dict] = {}


def path_for(kata_id: str, fixtures_dir: Path = FIXTURES_DIR) -> Path:
    return fixtures_dir / f"{kata_id}.safetensors"


def load(kata_id: str) -> dict:
    """The fixtures of `weekN/<kata>`: a dict of tensors and JSON values (cached per process)."""
    if kata_id not in _cache:
        path = path_for(kata_id)
        if not path.is_file():
            raise FileNotFoundError(f"no fixtures for {kata_id}: run `kata fixtures --regenerate {kata_id}`")
        with open(path, "rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            metadata = json.loads(fh.read(header_len)).get("__metadata__", {})
        data = dict(load_file(path))
        data.update(json.loads(metadata.get("json", "{}")))
        _cache[kata_id] = data
    return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in _cache[kata_id].items()}


def serialize(values: dict) -> bytes:
    tensors = {k: v.contiguous() for k, v in values.items() if isinstance(v, torch.Tensor)}
    extras = {k: v for k, v in values.items() if not isinstance(v, torch.Tensor)}
    metadata = {"json": json.dumps(extras, sort_keys=True, ensure_ascii=False)}
    return save(dict(sorted(tensors.items())), metadata=metadata)


def recipes() -> dict[str, Path]:
    return {
        f"{p.parent.name}/{p.stem}": p
        for p in sorted(RECIPES_DIR.glob("week*/*.py"))
        if not p.name.startswith("_")
    }


def build(kata_id: str, recipe: Path) -> bytes:
    spec = importlib.util.spec_from_file_location(f"_kata_recipe_{kata_id.replace('/', '_')}", recipe)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reference_root = impl.reference()

    def reference(dotted: str):
        return reference_root.import_module(dotted)

    torch.manual_seed(0)
    torch.set_num_threads(1)  # float reductions must not depend on the machine's core count
    with torch.random.fork_rng():
        values = module.build(reference)
    return serialize(values)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def regenerate(only: list[str] | None = None, fixtures_dir: Path = FIXTURES_DIR) -> dict[str, str]:
    """Rebuild fixtures (all, or the kata ids in `only`) and update the manifest."""
    manifest = read_manifest(fixtures_dir)
    written = {}
    for kata_id, recipe in recipes().items():
        if only and kata_id not in only:
            continue
        data = build(kata_id, recipe)
        out = path_for(kata_id, fixtures_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        manifest[kata_id] = {
            "file": str(out.relative_to(fixtures_dir)),
            "sha256": sha256(data),
            "recipe": str(recipe.relative_to(impl.PROJECT_ROOT)),
            "recipe_sha256": sha256(recipe.read_bytes()),
            "reference_sha256": _reference_sha(kata_id),
            "torch": torch.__version__.split("+")[0],
            "command": f"kata fixtures --regenerate {kata_id}",
        }
        written[kata_id] = manifest[kata_id]["sha256"]
    (fixtures_dir / "manifest.json").write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    return written


def _reference_sha(kata_id: str) -> str | None:
    path = impl.NAMED_ROOTS["reference"] / f"{kata_id}.py"
    return sha256(path.read_bytes()) if path.is_file() else None


def read_manifest(fixtures_dir: Path = FIXTURES_DIR) -> dict:
    path = fixtures_dir / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def check(fixtures_dir: Path = FIXTURES_DIR) -> list[str]:
    """Problems with the stored fixtures (empty when all is well)."""
    manifest = read_manifest(fixtures_dir)
    problems = []
    for kata_id, recipe in recipes().items():
        entry = manifest.get(kata_id)
        if entry is None:
            problems.append(f"{kata_id}: not in the manifest (run `kata fixtures --regenerate {kata_id}`)")
            continue
        path = fixtures_dir / entry["file"]
        if not path.is_file():
            problems.append(f"{kata_id}: {entry['file']} is missing")
        elif sha256(path.read_bytes()) != entry["sha256"]:
            problems.append(f"{kata_id}: {entry['file']} does not match its manifest hash")
        if sha256(recipe.read_bytes()) != entry["recipe_sha256"]:
            problems.append(f"{kata_id}: {entry['recipe']} changed since the fixtures were made")
        if impl.NAMED_ROOTS["reference"].is_dir() and _reference_sha(kata_id) != entry.get("reference_sha256"):
            problems.append(f"{kata_id}: reference/{kata_id}.py changed since the fixtures were made")
    if not RECIPES_DIR.is_dir():  # a student copy: no recipes, so verify the files alone
        for kata_id, entry in manifest.items():
            path = fixtures_dir / entry["file"]
            if not path.is_file() or sha256(path.read_bytes()) != entry["sha256"]:
                problems.append(f"{kata_id}: {entry['file']} is missing or does not match its manifest hash")
        return problems
    for kata_id in manifest:
        if kata_id not in recipes():
            problems.append(f"{kata_id}: in the manifest but has no recipe")
    return problems
