!> Fortran MPI mock host on an unstructured grid, for the ai4land plugin.
!!
!!   mpirun -n N ai4land_mock_host_points points_host.nml
!!
!! Its cells are the destination cells of an ESMF/SCRIP weights file (as an ICON or FESOM model
!! would have); rank r owns cells r+1, r+1+N, ... (1-based), a points partition in no box order.
!! It puts the analytic climate at the cells' centre latitudes (yc_b), gets 'landuse_fraction'
!! and 'lai' when they change, gathers them on rank 0 into one CF netCDF file (dimension cell, the
!! centres yc_b/xc_b as auxiliary coordinates lat/lon; docs/outputs.md) and prints one line per
!! model year. Any plugin error ends the run with MPI_Abort(status).
program ai4land_mock_host_points
  use, intrinsic :: iso_fortran_env, only: output_unit
  use mpi
  use netcdf
  use ai4land
  use mock_host_support
  implicit none

  ! &points_host_nml
  integer :: start_year = 2015, nyears = 1
  character(len=1024) :: weights_file = '', output_file = 'points_host_out.nc', ai4land_namelist = 'ai4land_in'
  logical :: put_drivers = .true.
  namelist /points_host_nml/ weights_file, start_year, nyears, output_file, ai4land_namelist, put_drivers

  type(ai4land_component) :: comp
  integer :: mpierr, ierr, rank, nranks, comm, unit, ios, ncid, dimid, varid, ncells, nlocal, ncls, k
  integer :: year, month, changed, iyear, lai_record
  integer :: out_id, dim_cell, dim_cls, dim_year, dim_time, dim_nv, var_lu, var_lai, var_lat, var_lon
  integer :: var_year, var_year_bnds, var_time, var_time_bnds, var_cls, var_name
  integer, allocatable :: cells(:)
  real(dp), allocatable :: lat_all(:), lon_all(:), lat(:), lu(:, :), lai(:), lu_all(:, :), lai_all(:, :)
  character(len=name_len), allocatable :: class_names(:)
  character(len=1024) :: nml_path, iomsg

  call MPI_Init(mpierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, mpierr)
  call MPI_Comm_size(MPI_COMM_WORLD, nranks, mpierr)
  call open_argument_file('ai4land_mock_host_points <namelist file>', unit, nml_path)
  read(unit, nml=points_host_nml, iostat=ios, iomsg=iomsg)
  if (ios /= 0) call fail(2, 'bad &points_host_nml in ' // trim(nml_path) // ': ' // trim(iomsg))
  close(unit)

  ! ---- the host's cells: those of the weights file, and their centres (degrees)
  call check_nc(nf90_open(trim(weights_file), NF90_NOWRITE, ncid), 'open ' // trim(weights_file))
  call check_nc(nf90_inq_dimid(ncid, 'n_b', dimid), 'dimension n_b')
  call check_nc(nf90_inquire_dimension(ncid, dimid, len=ncells), 'dimension n_b')
  allocate(lat_all(ncells), lon_all(ncells))
  call check_nc(nf90_inq_varid(ncid, 'yc_b', varid), 'variable yc_b')
  call check_nc(nf90_get_var(ncid, varid, lat_all), 'variable yc_b')
  call check_nc(nf90_inq_varid(ncid, 'xc_b', varid), 'variable xc_b')
  call check_nc(nf90_get_var(ncid, varid, lon_all), 'variable xc_b')
  call check_nc(nf90_close(ncid), 'close ' // trim(weights_file))
  if (ncells < nranks) call fail(2, 'more ranks than host cells')
  cells = [(k, k = rank + 1, ncells, nranks)]
  nlocal = size(cells)
  lat = lat_all(cells)

  ! ---- plugin set-up on a points partition
  call MPI_Comm_dup(MPI_COMM_WORLD, comm, mpierr)
  call ai4land_init(comp, comm, trim(ai4land_namelist), ierr)
  call check_plugin(ierr, 'ai4land_init(' // trim(ai4land_namelist) // ')')
  call ai4land_def_partition_points(comp, cells, ierr)
  call check_plugin(ierr, 'ai4land_def_partition_points')
  call ai4land_enddef(comp, ierr)
  call check_plugin(ierr, 'ai4land_enddef')
  call ai4land_field_levels(comp, 'landuse_fraction', ncls, ierr)
  call check_plugin(ierr, "ai4land_field_levels('landuse_fraction')")
  allocate(lu(nlocal, ncls), lai(nlocal), lu_all(ncells, ncls), lai_all(ncells, 1), class_names(ncls))
  call get_class_names(comp, class_names)
  if (rank == 0) call create_output()

  lai_record = 0
  do iyear = 1, nyears
    year = start_year + iyear - 1
    do month = 1, 12
      if (put_drivers) call put_climate(comp, year, month, lat, [0.0_dp])
      call ai4land_step(comp, year, month, 1, 0, changed, ierr)
      call check_plugin(ierr, 'ai4land_step')
      if (iand(changed, AI4LAND_CHANGED_LANDUSE) /= 0) then
        call ai4land_get(comp, 'landuse_fraction', lu, ierr)
        call check_plugin(ierr, "ai4land_get('landuse_fraction')")
        call gather_points(lu, lu_all)
        if (rank == 0) call check_nc(nf90_put_var(out_id, var_lu, lu_all, start=[1, 1, iyear], &
                                                  count=[ncells, ncls, 1]), 'put landuse_fraction')
      end if
      if (iand(changed, AI4LAND_CHANGED_LAI) /= 0) then
        call ai4land_get(comp, 'lai', lai, ierr)
        call check_plugin(ierr, "ai4land_get('lai')")
        call gather_points(reshape(lai, [nlocal, 1]), lai_all)
        lai_record = lai_record + 1
        if (rank == 0) then
          call put_time_record(out_id, var_time, var_time_bnds, lai_record, &
                               (iyear - 1) * 365 + day_of_year(month, 1) - 1)
          call check_nc(nf90_put_var(out_id, var_lai, lai_all(:, 1), start=[1, lai_record], count=[ncells, 1]), &
                        'put lai')
        end if
      end if
    end do
    if (rank == 0) then
      write(output_unit, '(a,i0,a,i0,a,f6.4,a,f6.3)') 'year ', year, ': ', ncells, ' cells, ocean share ', &
        sum(lu_all(:, 1)) / ncells, ', mean LAI ', sum(lai_all) / ncells
      flush(output_unit)
    end if
  end do

  call ai4land_finalize(comp, ierr)
  call check_plugin(ierr, 'ai4land_finalize')
  if (rank == 0) then
    call end_time_records(out_id, var_time_bnds, lai_record, 365 * nyears)
    call check_nc(nf90_close(out_id), 'close ' // trim(output_file))
  end if
  call MPI_Comm_free(comm, mpierr)
  call MPI_Finalize(mpierr)

contains

  !> Gather every rank's `local(nlocal, nlev)` into `global(ncells, nlev)` on rank 0, by cell index.
  subroutine gather_points(local, global)
    real(dp), intent(in) :: local(:, :)
    real(dp), intent(inout) :: global(:, :)
    integer :: r, level
    integer, allocatable :: counts(:), displs(:), all_cells(:)
    real(dp), allocatable :: values(:)
    allocate(counts(0:nranks - 1), displs(0:nranks - 1))
    call MPI_Gather(nlocal, 1, MPI_INTEGER, counts, 1, MPI_INTEGER, 0, comm, mpierr)
    displs(0) = 0
    do r = 1, nranks - 1
      displs(r) = displs(r - 1) + counts(r - 1)
    end do
    allocate(all_cells(merge(ncells, 1, rank == 0)), values(merge(ncells, 1, rank == 0)))
    call MPI_Gatherv(cells, nlocal, MPI_INTEGER, all_cells, counts, displs, MPI_INTEGER, 0, comm, mpierr)
    do level = 1, size(local, 2)
      call MPI_Gatherv(local(:, level), nlocal, MPI_DOUBLE_PRECISION, values, counts, displs, &
                       MPI_DOUBLE_PRECISION, 0, comm, mpierr)
      if (rank == 0) global(all_cells, level) = values
    end do
  end subroutine gather_points

  !> Create the output file: cell centres as auxiliary coordinates (the weights file gives no cell
  !> corners, so no lat/lon bounds), time axes with bounds, the class axis, the fields' definitions.
  subroutine create_output()
    integer :: iy
    call check_nc(nf90_create(trim(output_file), ior(NF90_CLOBBER, NF90_NETCDF4), out_id), 'create ' // trim(output_file))
    call check_nc(nf90_def_dim(out_id, 'cell', ncells, dim_cell), 'def_dim cell')
    call check_nc(nf90_def_dim(out_id, 'nv', 2, dim_nv), 'def_dim nv')
    call check_nc(nf90_def_dim(out_id, 'year', nyears, dim_year), 'def_dim year')
    call check_nc(nf90_def_dim(out_id, 'time', NF90_UNLIMITED, dim_time), 'def_dim time')
    call def_class_axis(out_id, ncls, dim_cls, var_cls, var_name)
    call check_nc(nf90_def_var(out_id, 'lat', NF90_DOUBLE, [dim_cell], var_lat), 'def_var lat')
    call put_cf_attributes(out_id, var_lat, standard_name='latitude', long_name='host cell centre latitude (yc_b)', &
                           units='degrees_north')
    call check_nc(nf90_def_var(out_id, 'lon', NF90_DOUBLE, [dim_cell], var_lon), 'def_var lon')
    call put_cf_attributes(out_id, var_lon, standard_name='longitude', long_name='host cell centre longitude (xc_b)', &
                           units='degrees_east')
    call def_time_axis(out_id, 'year', dim_year, dim_nv, start_year, 'model year of the land-use state', &
                       var_year, var_year_bnds)
    call def_time_axis(out_id, 'time', dim_time, dim_nv, start_year, 'step at which the host received the LAI', &
                       var_time, var_time_bnds)
    call check_nc(nf90_def_var(out_id, 'landuse_fraction', NF90_DOUBLE, [dim_cell, dim_cls, dim_year], var_lu), &
                  'def_var landuse_fraction')
    call put_cf_attributes(out_id, var_lu, standard_name='area_fraction', &
                           long_name='land-use class fraction of the host cell', units='1', &
                           cell_methods='area: mean year: mean', coordinates='lat lon class_name')
    call check_nc(nf90_def_var(out_id, 'lai', NF90_DOUBLE, [dim_cell, dim_time], var_lai), 'def_var lai')
    call put_cf_attributes(out_id, var_lai, standard_name='leaf_area_index', long_name='leaf area index (m2 m-2)', &
                           units='1', cell_methods='area: mean time: mean', coordinates='lat lon')
    call check_nc(nf90_put_att(out_id, NF90_GLOBAL, 'Conventions', cf_conventions), 'att')
    call check_nc(nf90_put_att(out_id, NF90_GLOBAL, 'title', 'ai4land Fortran mock host output, unstructured cells'), &
                  'att')
    call check_nc(nf90_put_att(out_id, NF90_GLOBAL, 'source', 'ai4land_mock_host_points'), 'att')
    call check_nc(nf90_put_att(out_id, NF90_GLOBAL, 'host_weights_file', trim(weights_file)), 'att')
    call check_nc(nf90_put_att(out_id, NF90_GLOBAL, 'mpi_ranks', nranks), 'att')
    call check_nc(nf90_enddef(out_id), 'enddef')
    call check_nc(nf90_put_var(out_id, var_lat, lat_all), 'put lat')
    call check_nc(nf90_put_var(out_id, var_lon, lon_all), 'put lon')
    call put_axis(out_id, var_year, var_year_bnds, [(365.0_dp * (iy - 1), iy = 1, nyears)], &
                  [(365.0_dp * (iy - 1), iy = 1, nyears)], [(365.0_dp * iy, iy = 1, nyears)])
    call put_class_axis(out_id, var_cls, var_name, class_names)
  end subroutine create_output

end program ai4land_mock_host_points
