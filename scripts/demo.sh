#!/usr/bin/env bash
# Set everything up, then run the coupled demo: the Fortran mock host on 4 MPI ranks for 3 model
# years with monthly LAI, calling the trained emulators. Leaves netCDF output and PNG maps in out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
[ -f data/world/bioclim.nc ] || ai4land make-data --out data/world --seed 0
mkdir -p out/demo
cp namelists/demo.nml out/demo/demo.nml
cd out/demo
echo "== demo: Fortran mock host, mpirun -n 4, years 2031-2033 (held out from training), monthly LAI"
time mpirun -n 4 ../../build/ai4land_mock_host demo.nml
ai4land plot mock_host_out.nc history/ai4land_fine_history.nc --out maps
echo "== demo output: $PWD/mock_host_out.nc, $PWD/history/, maps in $PWD/maps/"
