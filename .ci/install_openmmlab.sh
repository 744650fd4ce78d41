#!/usr/bin/env bash
# Install the OpenMMLab 3.x stack the downstream tests (tests/downstream/test_mm*.py) need into the
# environment of PYTHON: mmcv 2.1.0 with its compiled CPU ops, mmengine, mmdet, mmsegmentation, mmaction2.
#
#   .ci/install_openmmlab.sh [--wheel-only] PYTHON
#
# --wheel-only makes sure a usable mmcv wheel is in the cache and installs nothing into PYTHON's environment,
# so CI can run it in the background while the tests that need no OpenMMLab run.
#
# No mmcv 2.1.0 wheel exists for current torch on the package registry, and its sources do not build as they
# are: torch's headers need C++20 where mmcv's setup.py asks for C++14/17. Where the wheel comes from, first
# match wins:
#   1. the cache, $ZOO_CI_CACHE/wheels/mmcv-2.1.0-torch<T>-py<P>/ (default ~/.cache/zoo-ci), outside the clone;
#   2. a wheelhouse, $ZOO_WHEELHOUSE (default ../shared/wheels beside the clone when it exists; set it empty to
#      skip this step): its folder mmcv-2.1.0-torch<T>-py<P>/ holding a cp<P> wheel, used only when the mmcv
#      version, the torch version and the Python tag all match and its compiled ops load against the installed
#      torch; it is then copied into the cache;
#   3. otherwise it is built as it always was, once per torch and Python version (about 30-45 min on 2 cores,
#      55 CPU-minutes): mmcv's sources with -std=c++20, setuptools<70, no build isolation, into the cache.
# Whatever its origin, the wheel must pass `import mmcv.ops` once installed, or it is rebuilt.
# The ops are CPU-only (CUDA hidden during the build): enough for the tests. For GPU training use OpenMMLab's
# prebuilt wheels (`mim install mmcv==2.1.0`, for the torch/CUDA pairs they publish) or build with FORCE_CUDA=1
# and a CUDA toolkit.
set -euo pipefail

wheel_only=0
if [ "${1:-}" = --wheel-only ]; then wheel_only=1; shift; fi
py=${1:?usage: $0 [--wheel-only] PYTHON}
MMCV=2.1.0
PINS=(mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 mmaction2==1.2.0)

torch_version=$("$py" -c 'import torch; print(torch.__version__.split("+")[0])')
torch_dist=$("$py" -c 'import importlib.metadata as m; print(m.version("torch"))')  # pinned: pip must keep it
pyver=$("$py" -c 'import sys; print("%d%d" % sys.version_info[:2])')
cache=${ZOO_CI_CACHE:-$HOME/.cache/zoo-ci}
tag="mmcv-$MMCV-torch$torch_version-py$pyver"
wheels="$cache/wheels/$tag"
default_wheelhouse="$(cd "$(dirname "$0")/.." && pwd)/../shared/wheels"
[ -d "$default_wheelhouse" ] || default_wheelhouse=
wheelhouse=${ZOO_WHEELHOUSE-$default_wheelhouse}

build_mmcv() {
  local src site
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # A side environment that sees PYTHON's packages (torch) through a .pth file, with its own build tools
  # in front: setuptools<70 for mmcv's setup.py, without touching PYTHON's environment.
  "$py" -m venv "$work/build-env"
  site=$("$py" -c 'import site; print(site.getsitepackages()[0])')
  echo "$site" > "$("$work/build-env/bin/python" -c 'import site; print(site.getsitepackages()[0])')/zz_target.pth"
  "$work/build-env/bin/python" -m pip install -q 'setuptools<70' wheel ninja
  "$work/build-env/bin/python" -m pip download -q --no-binary :all: --no-deps "mmcv==$MMCV" -d "$work"
  tar -xzf "$work/mmcv-$MMCV.tar.gz" -C "$work"
  src="$work/mmcv-$MMCV"
  sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
  mkdir -p "$wheels"
  echo "install_openmmlab: building mmcv $MMCV for torch $torch_version (CPU ops; this takes a while)"
  MMCV_WITH_OPS=1 FORCE_CUDA=0 CUDA_HOME= CUDA_VISIBLE_DEVICES= MAX_JOBS=${MAX_JOBS:-2} \
    "$work/build-env/bin/python" -m pip wheel -q --no-build-isolation --no-deps "$src" -w "$wheels"
}

# The first of the given paths that exists (a glob that matched nothing stays a literal pattern).
first_file() {
  local f
  for f in "$@"; do [ -e "$f" ] && { echo "$f"; return 0; }; done
  return 0
}

# Whether WHEEL's compiled ops load against the installed torch (a torch or Python mismatch fails here),
# installing nothing: the extension module is unpacked into a temporary folder and loaded from there.
ops_load() {
  local dir rc=0
  dir=$(mktemp -d)
  "$py" - "$1" "$dir" <<'PY' || rc=$?
import glob, importlib.util, sys, zipfile
import torch  # noqa: F401  (the extension links against it)
wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    ext = [n for n in z.namelist() if n.startswith('mmcv/_ext.') and n.endswith('.so')]
    if not ext:
        sys.exit(f'install_openmmlab: {wheel} has no compiled ops (mmcv/_ext*.so)')
    z.extract(ext[0], out)
spec = importlib.util.spec_from_file_location('mmcv._ext', glob.glob(f'{out}/mmcv/_ext.*.so')[0])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
PY
  rm -rf "$dir"
  return $rc
}

# Copy the wheelhouse's wheel for exactly this mmcv / torch / Python into the cache, when its ops load.
seed_from_wheelhouse() {
  local wheel
  [ -n "$wheelhouse" ] || return 1
  wheel=$(first_file "$wheelhouse/$tag"/mmcv-"$MMCV"-cp"$pyver"-cp"$pyver"-*.whl)
  if [ -z "$wheel" ]; then
    echo "install_openmmlab: the wheelhouse $wheelhouse has no $tag wheel"
    return 1
  fi
  if ! ops_load "$wheel"; then
    echo "install_openmmlab: the wheelhouse's $wheel does not load against torch $torch_version (above)"
    return 1
  fi
  mkdir -p "$wheels"
  cp "$wheel" "$wheels/"
  echo "install_openmmlab: seeded the cache from the wheelhouse: $(basename "$wheel")"
}

# A wheel whose ops load in the cache: the cached one, else the wheelhouse's, else a fresh build.
ensure_wheel() {
  local cached
  cached=$(first_file "$wheels"/mmcv-"$MMCV"-*.whl)
  if [ -n "$cached" ] && ops_load "$cached"; then
    return 0
  fi
  rm -f "$wheels"/mmcv-"$MMCV"-*.whl
  seed_from_wheelhouse && return 0
  echo "install_openmmlab: no usable mmcv wheel in $wheels or a wheelhouse; building one"
  build_mmcv
}

install_cached_mmcv() {
  local wheel
  wheel=$(first_file "$wheels"/mmcv-"$MMCV"-*.whl)
  [ -n "$wheel" ] || return 1
  # with mmcv's runtime requirements (mmengine, ...): the import check below needs them
  "$py" -m pip install -q --force-reinstall --no-deps "$wheel"
  "$py" -m pip install -q "$wheel" mmengine==0.10.7 'setuptools<82' "torch==$torch_dist"
  "$py" -c 'import mmcv.ops' || { echo "install_openmmlab: the cached $wheel does not import (above)"; return 1; }
}

# mmaction2 1.2.0's wheel (its latest release) lacks mmaction/models/localizers/drn, which mmaction.models
# imports (open-mmlab/mmaction2#2714): write a placeholder module there; DRN itself stays unavailable.
patch_mmaction_drn() {
  local drn error
  error=$("$py" -c 'import mmaction.models' 2>&1) && return 0
  [[ $error == *"No module named 'mmaction.models.localizers.drn'"* ]] || return 0
  drn="$("$py" -c 'import os, mmaction; print(os.path.dirname(mmaction.__file__))')/models/localizers/drn"
  mkdir -p "$drn"
  : > "$drn/__init__.py"
  cat > "$drn/drn.py" <<'EOF'
"""Placeholder written by zoo's .ci/install_openmmlab.sh: the mmaction2 1.2.0 wheel lacks this module
(open-mmlab/mmaction2#2714), which mmaction.models imports. DRN is unavailable here."""


class DRN:

    def __init__(self, *args, **kwargs):
        raise ImportError('the mmaction2 1.2.0 wheel lacks DRN (open-mmlab/mmaction2#2714); '
                          'install mmaction2 from its git repository to use it')
EOF
  echo "install_openmmlab: patched the missing mmaction.models.localizers.drn (open-mmlab/mmaction2#2714)"
}

installed() {
  "$py" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV'" 2>/dev/null
}

if [ "$wheel_only" = 1 ]; then
  installed || ensure_wheel
  exit 0
fi
if ! installed; then
  ensure_wheel
  if ! install_cached_mmcv; then
    echo "install_openmmlab: rebuilding mmcv"
    rm -f "$wheels"/mmcv-"$MMCV"-*.whl
    build_mmcv
    install_cached_mmcv || { echo "install_openmmlab: the built mmcv wheel does not import" >&2; exit 1; }
  fi
fi
# mmcv's own runtime requirements, the pinned OpenMMLab packages and what they import without declaring it
# (mmseg: ftfy, regex; mmaction2: importlib_metadata; mmengine: pkg_resources, gone from setuptools 82),
# keeping the installed torch.
"$py" -m pip install -q "mmcv==$MMCV" "${PINS[@]}" ftfy regex importlib_metadata 'setuptools<82' \
  "torch==$torch_dist"
patch_mmaction_drn
"$py" -c "
import mmcv.ops, mmdet.models, mmseg.models, mmaction.models
print('install_openmmlab: mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'mmseg', mmseg.__version__,
      'mmaction', mmaction.__version__)"
