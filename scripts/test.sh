#!/usr/bin/env bash
# Set everything up, then run every test: serial pytest, then the MPI suite on 2, 3 and 4 ranks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
[ -f data/world/bioclim.nc ] || ai4land make-data --out data/world --seed 0
export OMP_NUM_THREADS=1
status=0
echo "== serial tests"
python -m pytest -q --color=no || { rc=$?; [ $rc -eq 5 ] || status=$rc; }
for n in 2 3 4; do
  echo "== MPI tests on $n ranks"
  timeout 900 mpirun -n "$n" python -m pytest -q --color=no --with-mpi -m mpi -p no:cacheprovider tests/mpi \
    || { rc=$?; [ $rc -eq 5 ] || status=$rc; }
done
exit $status
