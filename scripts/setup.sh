#!/usr/bin/env bash
# Install everything ai4land-coupler needs on a fresh Debian machine (idempotent):
# apt packages, the .venv with pinned Python packages, and the CMake build in build/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

need_apt=()
for pkg in gfortran libopenmpi-dev openmpi-bin libnetcdf-dev libnetcdff-dev cmake pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  echo "== apt: installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "== venv: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.ai4land-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== pip: installing the package and its pinned dependencies"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[test]"
  echo "$want" > "$stamp"
fi
.venv/bin/python - <<'PY'
import mpi4py.rc
mpi4py.rc.initialize = False
from mpi4py import MPI
print("== mpi4py uses:", MPI.Get_library_version().splitlines()[0])
PY

echo "== cmake: building libai4land, the Fortran module and the mock host in build/"
mkdir -p build
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$ROOT/.venv/bin/python" \
  >build/cmake-configure.log 2>&1 || { cat build/cmake-configure.log; exit 1; }
cmake --build build -j2 >build/cmake-build.log 2>&1 || { tail -50 build/cmake-build.log; exit 1; }
cmake --install build --prefix build/install >/dev/null
echo "== setup done"
