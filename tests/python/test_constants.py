"""The binding's constants equal the headers' enum values, and every public
enum constant of include/kdlib/*.h has its constant in the binding.

The names are read from the headers' enum blocks; their values come from a C
program compiled against the headers (so the compiler, not a regex, evaluates
them).  usage: test_constants.py C_COMPILER INCLUDE_DIR... (KDLIB_LIBRARY set)
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

cc, incs = sys.argv[1], sys.argv[2:]
src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(src, "bindings", "python"))
from kdlib import _ema, _errors, _flexmatch, _labels, _losses, _threshold  # noqa: E402

names = []
for h in sorted(glob.glob(os.path.join(src, "include", "kdlib", "*.h"))):
    text = re.sub(r"/\*.*?\*/", "", open(h).read(), flags=re.S)
    for block in re.findall(r"\benum\s*\{(.*?)\}", text, re.S):
        names += re.findall(r"\b(KD_[A-Z0-9_]+)\s*(?:=[^,]*)?(?:,|$)", block.strip())

with tempfile.TemporaryDirectory() as d:
    c = os.path.join(d, "enums.c")
    with open(c, "w") as f:
        f.write("#include <stdio.h>\n#include <kdlib/kdlib.h>\nint main(void) {\n")
        f.writelines('    printf("%%s %%lld\\n", "%s", (long long)%s);\n' % (n, n) for n in names)
        f.write("    return 0;\n}\n")
    exe = os.path.join(d, "enums")
    subprocess.run([cc, "-std=c11"] + ["-I" + i for i in incs] + [c, "-o", exe], check=True)
    header = dict(l.split() for l in subprocess.run([exe], check=True, capture_output=True,
                                                    text=True).stdout.splitlines())
header = {k: int(v) for k, v in header.items()}

# Header prefix -> (binding module, prefix of the binding's name), longest first.
PREFIXES = [("KD_EMA_", _ema, ""), ("KD_FLEXMATCH_", _flexmatch, ""), ("KD_THRESHOLD_STRICT", _losses, "THRESHOLD_STRICT"),
            ("KD_THRESHOLD_INCLUSIVE", _losses, "THRESHOLD_INCLUSIVE"), ("KD_THRESHOLD_", _threshold, ""),
            ("KD_LABEL_SCORE_", _labels, "SCORE_"), ("KD_CLEANLAB_", _labels, "CLEANLAB_"), ("KD_SELECT_", _labels, "SELECT_"),
            ("KD_TSA_", _labels, "TSA_"),
            ("KD_SOFT_LABEL_", _labels, "SOFT_LABEL_"), ("KD_LOSS_", _losses, ""),
            ("KD_", _losses, "")]
errors_by_name = {cls.__doc__: cls for cls in _errors.STATUS_CLASSES.values()}

fails, checked = [], 0
for name, value in sorted(header.items(), key=lambda kv: kv[0]):
    if name == "KD_OK":
        got = 0 if 0 not in _errors.STATUS_CLASSES else "an error class"
        where = "status 0 (success)"
    elif name.startswith("KD_ERR_"):
        cls = errors_by_name.get(name)
        got = cls.status if cls is not None else None
        where = "kdlib._errors class for %s" % name
    else:
        prefix, mod, bprefix = next(p for p in PREFIXES if name.startswith(p[0]))
        bname = bprefix + name[len(prefix):]
        got = getattr(mod, bname, None)
        where = "%s.%s" % (mod.__name__, bname)
    checked += 1
    if got is None:
        fails.append("missing in the binding: %s (header %s = %d)" % (where, name, value))
    elif got != value:
        fails.append("%s = %r, header %s = %d" % (where, got, name, value))

# The other way: every upper-case int constant of the binding is a header value.
known = set()
for prefix, mod, bprefix in PREFIXES:
    known |= {(mod, bprefix + n[len(prefix):]) for n in header if n.startswith(prefix)}
for mod in (_ema, _flexmatch, _labels, _losses, _threshold):
    for n, v in vars(mod).items():
        if re.fullmatch(r"[A-Z][A-Z0-9_]*", n) and type(v) is int and (mod, n) not in known:
            fails.append("%s.%s = %d has no header constant" % (mod.__name__, n, v))

for m in fails:
    print("FAIL", m)
print("%d header constants checked, %d mismatches" % (checked, len(fails)))
sys.exit(1 if fails else 0)
