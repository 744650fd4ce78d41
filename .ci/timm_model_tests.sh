#!/usr/bin/env bash
# CI: timm's own model tests (tests/test_models.py of the installed timm release, run unchanged) on one
# variant of every zoo classification family.
#
#   .ci/timm_model_tests.sh [PYTHON]
#
# The source distribution of the installed timm version is fetched from the package registry; its
# test_models.py is copied into a temporary folder next to a conftest.py that imports zoo first, so the
# zoo's models are in timm's registry when the test module lists them. Tests are selected with -k on the
# variants below (timm's pretrained-weight tests download, so they are left out). The step fails when a
# test fails, or when a variant had no test that passed (a selection that collects nothing is a defect).
#
# Not run here, because timm's classification tests do not fit them (our own contract tests cover them,
# tests/test_contract.py): CGRSeg (segmentation: the model returns a mask logit map), SqueezeTime (video:
# (B, C, T, H, W) clips), TinySAM (a SAM image encoder: a 256-channel embedding map, no classifier).
set -euo pipefail

py=${1:-${PYTHON:-python3}}
# one (the smallest) variant per classification family; the SLAB family's four backbones each get one
variants=(
  vig_ti_224_gelu pvig_ti_224_gelu ptnt_ti_patch16_192 wavemlp_t_dw hire_mlp_tiny
  deit_t_prepbn slab_deit_t pvt_t_prepbn slab_pvt_v2_b0 slab_swin_t slab_cswin_t
  ghostnet_050 tnt_s_patch16_224
)
# the README's stated exceptions, as --deselect node ids (none at present)
exceptions=()

version=$("$py" -c 'import timm; print(timm.__version__)')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$py" -m pip download -q --no-deps --no-binary :all: "timm==$version" -d "$work/sdist"
tar -xzf "$work/sdist/timm-$version.tar.gz" -C "$work/sdist"
mkdir "$work/run"
cp "$work/sdist/timm-$version/tests/test_models.py" "$work/run/"
cat > "$work/run/conftest.py" <<'PY'
import zoo  # noqa: F401  registers the zoo's models with timm before test_models.py lists them
PY

select="($(printf ' or %s' "${variants[@]}" | cut -c5-)) and not pretrained"
echo "timm-tests: timm $version tests/test_models.py on ${#variants[@]} variants"
status=0
(cd "$work/run" && OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$py" -m pytest test_models.py -q -p no:cacheprovider \
  -W ignore::pytest.PytestUnknownMarkWarning -k "$select" "${exceptions[@]}" --junitxml="$work/report.xml") \
  || status=$?

# every variant must have run: at least one passed test whose id names it exactly
"$py" - "$work/report.xml" "${variants[@]}" <<'PY' || status=1
import re, sys
import xml.etree.ElementTree as ET
cases = ET.parse(sys.argv[1]).getroot().iter('testcase')
passed = set()
for case in cases:
    if not any(child.tag in ('failure', 'error', 'skipped') for child in case):
        match = re.search(r'\[(?:\d+-)?([^\]]+?)(?:-\d+)?\]$', case.get('name', ''))
        if match:
            passed.add(match.group(1).split('.')[0])
missing = [v for v in sys.argv[2:] if v not in passed]
if missing:
    print(f'timm-tests: no passing timm test ran for {", ".join(missing)}')
    sys.exit(1)
print(f'timm-tests: every variant ran ({len(sys.argv) - 2})')
PY
exit $status
