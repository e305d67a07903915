"""Dependencies one way: no import cycle between fmnist's modules (lazy imports inside functions
counted too), and the layers named in docs/architecture.md respected."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> dict:
    modules = {_module_name(p): p for p in (SRC / "fmnist").rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                if t in modules and t != name and not name.startswith(t + "."):  # a package's own parents
                    deps.add(t)
        graph[name] = deps
    return graph


def _cycle(graph: dict) -> "list | None":
    state: dict = {}

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep] if dep in stack else [node, dep]
            if dep not in state:
                found = visit(dep, stack + [dep])
                if found:
                    return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_no_import_cycle():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()))


def test_layers():
    graph = _graph()

    def reaches(src: str, prefix: str) -> bool:
        seen, todo = set(), [src]
        while todo:
            for dep in graph[todo.pop()]:
                if dep.startswith(prefix):
                    return True
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return False

    assert not reaches("fmnist.config", "fmnist.monitoring")
    for mod in ("fmnist.inference.pipeline", "fmnist.inference.answer"):  # below serving and monitoring
        assert not reaches(mod, "fmnist.monitoring") and not reaches(mod, "flask"), mod
    for above in ("fmnist.training", "fmnist.evaluation", "fmnist.artifact", "fmnist.models"):  # a data source
        assert not reaches("fmnist.pictures.garments.render", above), f"fmnist.pictures.garments depends on {above}"
    for above in ("fmnist.inference", "fmnist.serving", "fmnist.training", "fmnist.artifact"):  # images: the floor's
        for mod in ("fmnist.images.preprocess", "fmnist.images.foreground"):
            assert not reaches(mod, above), f"{mod} depends on {above}"
    for low in ("fmnist.data", "fmnist.pictures.garments.render", "fmnist.pictures.styles", "fmnist.images.preprocess",
                "fmnist.models", "fmnist.artifact", "fmnist.registry", "fmnist.inference",
                "fmnist.monitoring", "fmnist.training", "fmnist.batch.job", "fmnist.batch.writers",
                "fmnist.batch.dask_engine"):
        for high in ("fmnist.serving", "fmnist.cli", "fmnist.cluster"):
            assert not reaches(low, high), f"{low} depends on {high}"


def test_http_server_knows_nothing_of_the_app():
    """serving/http/ is an HTTP server: it imports no Flask and no module of the app; the JSON error shape
    (serving.apierror, over the ground floor's one refusal type), the settings and the errors are all it shares."""
    graph = _graph()
    allowed = {"fmnist.serving.apierror", "fmnist.config", "fmnist.errors"}
    server = [m for m in graph if m.startswith("fmnist.serving.http")]
    assert {"fmnist.serving.http.worker", "fmnist.serving.http.http11"} <= set(server)
    for mod in server:
        outside = {d for d in graph[mod] if not d.startswith("fmnist.serving.http")} - allowed - {"fmnist.serving"}
        assert not outside, f"{mod} imports {sorted(outside)}"
        source = (SRC / (mod.replace(".", "/") + ".py"))
        source = source if source.exists() else SRC / mod.replace(".", "/") / "__init__.py"
        tree = ast.parse(source.read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & {"flask", "werkzeug"}, f"{mod} imports Flask"
    assert graph["fmnist.serving.apierror"] <= {"fmnist.errors"}, "the shared error shape imports the ground floor only"


def test_importing_the_server_does_not_import_flask():
    import subprocess
    import sys

    code = "import sys, fmnist.serving.http.worker, fmnist.serving.http.gunicorn_conf; print('flask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_one_atomic_writer():
    """Every file fmnist replaces in place goes through fileio (a unique temporary file, renamed): no module
    renames a temporary file of its own (artifact.py renames a whole directory, its own kind of commit)."""
    for path in (SRC / "fmnist").rglob("*.py"):
        if path.name in ("fileio.py", "artifact.py"):
            continue
        text = path.read_text()
        assert "os.replace(" not in text and "mkstemp(" not in text, f"{path} writes a file atomically by hand"


def test_the_refusal_table_is_true_and_documented():
    """serving/refusals.py names every place a request is refused; each module it names still answers that
    status with that code, and docs/architecture.md holds the table as it renders."""
    from fmnist.serving import refusals

    for r in refusals.REFUSALS:
        text = (SRC / "fmnist" / r.module).read_text()
        if r.status:
            assert str(r.status) in text, f"{r.module} no longer answers {r.status}"
        if r.code:
            assert f'"{r.code}"' in text, f"{r.module} no longer answers {r.code}"
    doc = (SRC.parent / "docs" / "architecture.md").read_text()
    assert refusals.markdown() in doc, "docs/architecture.md: paste refusals.markdown() under 'Who refuses what'"


def test_unit_tests_start_no_server():
    """tests/unit holds no test marked integration (those live in tests/integration)."""
    markers = ("mark." + "integration", "running_" + "server")  # spelt apart so this file does not match itself
    for path in (SRC.parent / "tests" / "unit").glob("test_*.py"):
        assert not any(m in path.read_text() for m in markers), path
