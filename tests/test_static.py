"""The grader's source scan: dynamic access that could hide a forbidden call is reported.

Every bypass below must be reported under the top-level function or class that holds it
("*" for module-level code); every legitimate snippet must scan clean.
"""

from types import SimpleNamespace

import pytest

from graders import catalog, static

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"

# (source after HEAD, the key it must be reported under)
BYPASSES = [
    # names the scan cannot read
    ('def softmax(x, dim=-1):\n    return getattr(F, "soft" + "max")(x, dim)\n', "softmax"),
    ('def f(q, k, v, name="scaled_dot_product_attention"):\n    return getattr(F, name)(q, k, v)\n', "f"),
    ('def f(x):\n    op = "max"\n    return getattr(torch, f"soft{op}")(x, -1)\n', "f"),
    ('import codecs\ndef f(x):\n    return getattr(F, codecs.decode("fbsgznk", "rot13"))(x, -1)\n', "f"),
    ('import base64\ndef f(x):\n    return getattr(F, base64.b64decode("c29mdG1heA==").decode())(x, -1)\n', "f"),
    ('def f(x):\n    return getattr(*(F, "softmax"))(x, -1)\n', "f"),
    ('import importlib\ndef f(x):\n    return importlib.import_module("torch.nn.functional").softmax(x, -1)\n', "*"),
    ('def f(x):\n    from importlib import import_module\n    return import_module("torch").softmax(x, -1)\n', "f"),
    ('def f(x):\n    return __import__("torch").softmax(x, -1)\n', "f"),
    ('import operator\ndef f(q, k, v):\n    return operator.attrgetter("scaled_dot_product_attention")(F)(q, k, v)\n', "f"),
    ('def f(x):\n    return object.__getattribute__(F, "soft" "max")(x, -1)\n', "f"),
    ('def f(x):\n    return F.__getattribute__("softmax")(x, -1)\n', "f"),
    ('import inspect\ndef f(x, n):\n    return inspect.getattr_static(F, n)(x, -1)\n', "f"),
    ('import functools\ndef f(x):\n    return functools.reduce(getattr, ["nn", "functional", "softmax"], torch)(x, -1)\n', "f"),
    ('g = getattr\ndef f(x):\n    return g(F, "softmax")(x, -1)\n', "*"),
    ('import string\ndef f(x):\n    return string.Formatter().get_field("0.softmax", [F], {})[0](x, -1)\n', "f"),
    ('import pickle\ndef f(x):\n    return pickle.loads(b"ctorch\\nsoftmax\\n.")(x, -1)\n', "*"),
    # namespaces read as dicts
    ('def f(x):\n    return F.__dict__["soft" + "max"](x, -1)\n', "f"),
    ('def f(x):\n    return vars(F)["softmax"](x, -1)\n', "f"),
    ('import sys\ndef f(x):\n    return sys.modules["torch.nn.functional"].softmax(x, -1)\n', "f"),
    ('def f(x):\n    return globals()["F"].softmax(x, -1)\n', "f"),
    ('def f(x):\n    return locals()\n', "f"),
    ('def f(x):\n    return __builtins__["getattr"](F, "softmax")(x, -1)\n', "f"),
    ('def f():\n    return ().__class__.__base__.__subclasses__()\n', "f"),
    ('def f(g):\n    return g.__globals__["F"]\n', "f"),
    ('def f(g, h):\n    g.__code__ = h.__code__\n', "f"),
    ('import sys\ndef f():\n    return sys._getframe().f_back.f_globals["F"]\n', "f"),
    ('def f():\n    try:\n        1 / 0\n    except ZeroDivisionError as e:\n        return e.__traceback__.tb_frame.f_globals\n', "f"),
    ('class Attention(nn.Module):\n    def forward(self, q, k, v):\n        return getattr(self.backend, self.op)(q, k, v)\n', "Attention"),
    # code from text or from outside Python
    ('def f(q, k, v):\n    return eval("F.scaled_dot_" + "product_attention")(q, k, v)\n', "f"),
    ('def f(x):\n    exec("y = F.softmax(x, -1)")\n', "f"),
    ('def f(x):\n    return compile("F.softmax(x, -1)", "<s>", "eval")\n', "f"),
    ('import ctypes\ndef f():\n    return ctypes.pythonapi\n', "*"),
    # another thread or process
    ('import threading\ndef f(x):\n    t = threading.Thread(target=print)\n    t.start()\n', "*"),
    ('def f(x):\n    from concurrent.futures import ThreadPoolExecutor\n    with ThreadPoolExecutor() as ex:\n        return ex.submit(F.gelu, x).result()\n', "f"),
    ('def f(x):\n    import multiprocessing\n    return multiprocessing.Pool(2)\n', "f"),
    ('def f(x):\n    import _thread\n    _thread.start_new_thread(print, ())\n', "f"),
    ('import asyncio\ndef f(x):\n    return asyncio.run(asyncio.to_thread(F.gelu, x))\n', "*"),
    ('import os\ndef f(x):\n    return os.fork()\n', "f"),
    ('def f(x):\n    import subprocess\n    return subprocess.run(["python", "-c", "1"])\n', "f"),
    ('def f(x):\n    return torch.jit.fork(F.gelu, x)\n', "f"),
    # rewriting the grader or torch at run time
    ('import builtins\ndef f(x):\n    return builtins.getattr(F, "softmax")(x, -1)\n', "*"),
    ('def my_gelu(x):\n    return x\nsetattr(F, "gelu", my_gelu)\n', "*"),
    ('def f():\n    delattr(torch.nn.functional, "gelu")\n', "f"),
    ('def f():\n    torch.softmax = lambda x, dim: x\n', "f"),
    ('nn.Module.__call__ = lambda self, *a: self.forward(*a)\n', "*"),
    ('def f():\n    del F.gelu\n', "f"),
    ('def f():\n    import graders.guard\n    graders.guard.forbid = None\n', "f"),
    ('from unittest import mock\ndef f(q, k, v):\n    return q\n', "*"),
    ('import sys\ndef f():\n    sys.settrace(None)\n', "f"),
    ('def f(q, k, v):\n    with torch._C.DisableTorchFunction():\n        return q\n', "f"),
    ('from torch.utils._python_dispatch import _disable_current_modes\n', "*"),
    ('def f(x):\n    return torch.overrides.TorchFunctionMode\n', "f"),
    # a module stored or passed on, where the scan can no longer follow its attributes
    ('def f(x, n):\n    m = F\n    return m.softmax(x, -1)\n', "f"),
    ('class Attention(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.t = torch\n', "Attention"),
    ('class Box:\n    def get(self, n):\n        return getattr(self, n)\ndef f(x):\n    return Box.get(F, "soft" + "max")(x, -1)\n', "f"),
    ('def backend():\n    return nn\n', "backend"),
    ('BACKENDS = {"fast": F}\n', "*"),
    ('def f(x):\n    return (F if x is None else torch).gelu(x)\n', "f"),
    ('vars = vars\ndef f(x):\n    return vars(F)["softmax"](x, -1)\n', "*"),
    ('class A:\n    def eval(self):\n        return self\ndef f(q):\n    return eval("F.gelu")(q)\n', "f"),
    ('def f(q, exec=exec):\n    exec("import threading")\n', "f"),
    ('from torch.nn.functional import *\ndef f(q, k, v):\n    return q\n', "*"),
    ('def f(x):\n    g = getattr.__call__\n    return g(F, "gelu")(x)\n', "f"),
]

LEGITIMATE = [
    # computed names on the student's own object
    'class GPT(nn.Module):\n    def __init__(self, n):\n        super().__init__()\n'
    '        for i in range(n):\n            setattr(self, f"h{i}", nn.Linear(2, 2))\n'
    '    def forward(self, x):\n        for i in range(2):\n            x = getattr(self, f"h{i}")(x)\n        return x\n',
    'class Config:\n    def __init__(self, **kw):\n        self.__dict__.update(kw)\n        self.names = sorted(vars(self))\n',
    'class Frozen:\n    def __init__(self, x):\n        object.__setattr__(self, "x", x)\n',
    'class Wrapper(nn.Module):\n    def __getattr__(self, name):\n        return super().__getattr__(name)\n',
    # constant names, written out
    'def gelu(x):\n    return getattr(F, "gelu")(x)\n',
    'def act(x):\n    return getattr(nn, "ReLU")()(x)\n',
    # strings that are data, not names
    'def check(x):\n    if x.dim() != 4:\n        raise ValueError(f"expected [B, H, T, d], got {tuple(x.shape)}")\n    return x\n',
    'def n_head(cfg):\n    return cfg.get("n_head", 4)\n',
    'import codecs\ndef text(b):\n    return codecs.decode(b, "utf-8", errors="replace")\n',
    # harmless introspection
    'def same(a, b):\n    return a.__class__ is b.__class__ and type(a).__name__ == "Tensor"\n',
    'def is_tensor(x):\n    return torch.tensor(1.0).__class__ is x.__class__ or isinstance(x, torch.Tensor)\n',
    'def has(x, name):\n    return hasattr(x, name) and name in dir(x)\n',
    'def version():\n    return torch.__version__\n',
    # everyday modules and methods that share a builtin's name
    'import os\nimport math\nimport gc\ndef f(model):\n    gc.collect()\n    model.eval()\n'
    '    return os.environ.get("X", os.path.join("a", "b")), math.sqrt(2)\n',
    'import re\ndef split(text):\n    return re.compile(r"\\s+").split(text)\n',
    'from re import compile\nPATTERN = compile("a+")\n',
    'def compile(tokens):\n    return list(tokens)\ndef run(t):\n    return compile(t)\n',
    # the student's own objects, assigned as usual
    'class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.w = nn.Linear(2, 2)\n'
    '        self.w.weight.data.zero_()\n        self.head = self.w\n',
    'from dataclasses import dataclass, field\n@dataclass\nclass Config:\n    sizes: list = field(default_factory=list)\n'
    '    def __post_init__(self):\n        self.n = len(self.sizes)\n',
    'def mm(a, b):\n    return torch.ops.aten.mm(a, b)\n',
    'def tensors(x, m):\n    return F is not None and hasattr(torch, "compile") and isinstance(x, torch.Tensor) and isinstance(m, nn.Module)\n',
    'from torch import Tensor\ndef f(x: Tensor, y: "Tensor") -> Tensor:\n    assert isinstance(y, Tensor)\n    return torch.cat([x, y])\n',
    'class GPT(nn.Module):\n    def load(self, state):\n        own = dict(self.named_parameters())\n'
    '        for key, value in state.items():\n            self.get_parameter(key).data.copy_(value)\n'
    '            own[key].requires_grad_(True)\n',
    'from math import *\ndef f(x):\n    return sqrt(x)\n',
    'def causal(T):\n    return torch.ones(T, T).tril().bool()\nMASK = causal(4)\n',
]


def _scan(tmp_path, source: str, kata: str = "week2/attention") -> dict[str, str]:
    path = tmp_path / "submission.py"
    path.write_text(source)
    return static.violations(path, catalog.load(kata).forbidden)


def test_the_tables_are_large_enough():
    assert len(BYPASSES) >= 25 and len(LEGITIMATE) >= 10


@pytest.mark.parametrize("source, where", BYPASSES, ids=[str(i) for i in range(len(BYPASSES))])
def test_dynamic_access_is_reported_under_its_function(tmp_path, source, where):
    found = _scan(tmp_path, HEAD + source)
    assert where in found, (source, found)
    assert found[where].startswith(static.DYNAMIC), (source, found)
    # a module-level import is reported under "*"; its uses may also be reported where they are
    assert set(found) <= {where, "*", "f"}, (source, found)


@pytest.mark.parametrize("source", LEGITIMATE, ids=[str(i) for i in range(len(LEGITIMATE))])
def test_legitimate_code_is_not_reported(tmp_path, source):
    assert _scan(tmp_path, HEAD + source) == {}, source


def test_a_finding_names_the_construct_and_its_line(tmp_path):
    found = _scan(tmp_path, HEAD + 'def softmax(x):\n    return getattr(F, "soft" + "max")(x, -1)\n')
    assert found["softmax"].startswith("dynamic access: getattr with a computed name")
    assert found["softmax"].endswith("(line 5)")


def test_forbidden_names_still_come_first(tmp_path):
    found = _scan(tmp_path, HEAD + "def softmax(x):\n    eval('1')\n    return F.softmax(x, -1)\n")
    assert found == {"softmax": "torch.nn.functional.softmax"}


def test_katas_without_forbidden_apis_are_not_scanned(tmp_path):
    source = "import torch.nn as nn\ndef inject(model, name):\n    return getattr(model, name)\n"
    assert catalog.load("week7/lora").forbidden.get("*") == ()
    assert _scan(tmp_path, source, "week7/lora") == {}
    assert "inject" in _scan(tmp_path, source, "week2/attention")


def test_per_function_katas_scan_the_whole_module(tmp_path):
    source = "import torch\ndef patchify(x):\n    return x\ndef helper(x, n):\n    return getattr(torch, n)(x)\n"
    assert set(catalog.load("week8/vision").forbidden) == {"patchify"}
    assert set(_scan(tmp_path, source, "week8/vision")) == {"helper"}


def _module(path, kata="week2/attention"):
    implementation = SimpleNamespace(path_of=lambda dotted: path, display_path=lambda dotted: "week2/attention.py")
    return SimpleNamespace(kata=catalog.load(kata), implementation=implementation, _dotted="week2.attention")


def test_problem_for_fails_every_function_that_reaches_the_dynamic_access(tmp_path):
    path = tmp_path / "attention.py"
    path.write_text(HEAD + "def _impl(q, k, v):\n    return getattr(F, 'scaled_dot_' + 'product_attention')(q, k, v)\n"
                    "def scaled_dot_product_attention(q, k, v):\n    return _impl(q, k, v)\n"
                    "class MultiHeadAttention(nn.Module):\n    def forward(self, q):\n"
                    "        return scaled_dot_product_attention(q, q, q)\n"
                    "def softmax(x, dim=-1):\n    e = (x - x.amax(dim, keepdim=True)).exp()\n"
                    "    return e / e.sum(dim, keepdim=True)\n")
    module = _module(path)
    for name in ("_impl", "scaled_dot_product_attention", "MultiHeadAttention.forward"):
        problem = static.problem_for(module, name)
        assert problem is not None and problem.startswith("FORBIDDEN: week2/attention.py uses dynamic access: "), name
        assert "\n" not in problem and "write attribute and module names out" in problem
    assert static.problem_for(module, "softmax") is None


def test_problem_for_module_level_dynamic_access_fails_everything(tmp_path):
    path = tmp_path / "attention.py"
    path.write_text(HEAD + "import threading\ndef softmax(x, dim=-1):\n    return x\n")
    problem = static.problem_for(_module(path), "softmax")
    assert problem is not None and "import of `threading`" in problem and "another thread" in problem
