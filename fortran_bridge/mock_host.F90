!> Fortran MPI mock host model for the ai4land plugin.
!!
!!   mpirun -n N ai4land_mock_host mock_host.nml
!!
!! Decomposes an nlat x nlon lat-lon grid into boxes over a 2-D process grid, drives the plugin
!! through its lifecycle with an analytic seasonal climate (tas, pr, rsds put before each month),
!! gets 'landuse_fraction' and 'lai' when the plugin says they changed, gathers them on rank 0
!! into one CF netCDF file (docs/outputs.md) and prints one summary line per model year.
!! Any plugin error: the message is printed and the run ends with MPI_Abort(status).
program ai4land_mock_host
  use, intrinsic :: iso_fortran_env, only: output_unit
  use mpi
  use netcdf
  use ai4land
  use mock_host_support
  implicit none

  ! &mock_host_nml
  integer :: nlat = 18, nlon = 36, start_year = 2015, nyears = 2
  character(len=16) :: step_frequency = 'monthly'
  character(len=1024) :: output_file = 'mock_host_out.nc', ai4land_namelist = 'ai4land_in'
  character(len=1024) :: read_restart = '', write_restart = ''  ! '' = none
  real(dp) :: host_seconds_per_step = 0.0_dp  ! the host's own work between steps (a busy loop)
  logical :: put_drivers = .true.
  namelist /mock_host_nml/ nlat, nlon, start_year, nyears, step_frequency, output_file, ai4land_namelist, &
                           put_drivers, read_restart, write_restart, host_seconds_per_step

  real(dp), parameter :: deg = acos(-1.0_dp) / 180.0_dp
  type(ai4land_component) :: comp
  type(box_t), allocatable :: boxes(:)
  type(box_t) :: me
  integer :: mpierr, ierr, rank, nranks, comm, dims(2), unit, ios, r, k, i, j
  integer :: ncls, nlai, year, month, day, ndays, changed, iyear, lai_record, nsteps
  integer(8) :: ncells
  character(len=1024) :: nml_path, iomsg
  character(len=name_len), allocatable :: class_names(:)
  real(dp), allocatable :: lat(:), lon(:), lu(:, :, :), lu_global(:, :, :), lai_global(:, :, :), &
                           weight(:, :), work(:, :, :), unc(:, :, :), unc_global(:, :, :)
  real(4), allocatable :: lai(:, :)
  real(dp) :: lai_sum, lai_wsum, lai_min, lai_max, t0, t_step, boundary
  logical :: have_lu, daily
  integer :: ncid, dim_lon, dim_lat, dim_cls, dim_year, dim_time, dim_nv
  integer :: var_lon, var_lat, var_year, var_time, var_cls, var_name, var_lu, var_lai, var_unc
  integer :: var_lon_bnds, var_lat_bnds, var_year_bnds, var_time_bnds
  character(len=:), allocatable :: summary, all_names
  character(len=32) :: num

  call MPI_Init(mpierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, mpierr)
  call MPI_Comm_size(MPI_COMM_WORLD, nranks, mpierr)

  ! ---- host configuration
  call open_argument_file('ai4land_mock_host <mock_host namelist file>', unit, nml_path)
  read(unit, nml=mock_host_nml, iostat=ios, iomsg=iomsg)
  if (ios /= 0) call fail(2, 'bad &mock_host_nml in ' // trim(nml_path) // ': ' // trim(iomsg))
  close(unit)
  daily = step_frequency == 'daily'
  if (.not. daily .and. step_frequency /= 'monthly') &
    call fail(2, "step_frequency must be 'monthly' or 'daily', got '" // trim(step_frequency) // "'")
  if (nlat < 1 .or. nlon < 1 .or. nyears < 1) call fail(2, 'nlat, nlon and nyears must be positive')

  ! ---- the host's own communicator and 2-D decomposition (uneven boxes allowed)
  call MPI_Comm_dup(MPI_COMM_WORLD, comm, mpierr)
  dims = 0
  call MPI_Dims_create(nranks, 2, dims, mpierr)  ! dims(1) >= dims(2): more splits in longitude
  if (dims(1) > nlon .or. dims(2) > nlat) call fail(2, 'more ranks than the grid can be split into')
  allocate(boxes(0:nranks - 1))
  do r = 0, nranks - 1
    boxes(r) = box_of_rank(r, dims(1), dims(2), nlon, nlat)
  end do
  me = boxes(rank)
  allocate(lon(me%ni), lat(me%nj))
  lon = [(-180.0_dp + (me%i0 + i - 1.5_dp) * 360.0_dp / nlon, i = 1, me%ni)]
  lat = [(-90.0_dp + (me%j0 + j - 1.5_dp) * 180.0_dp / nlat, j = 1, me%nj)]

  ! ---- plugin set-up
  call ai4land_init(comp, comm, trim(ai4land_namelist), ierr)
  call check_plugin(ierr, 'ai4land_init(' // trim(ai4land_namelist) // ')')
  call ai4land_def_partition_box(comp, me%i0, me%j0, me%ni, me%nj, ierr)
  call check_plugin(ierr, 'ai4land_def_partition_box')
  call ai4land_enddef(comp, ierr)
  call check_plugin(ierr, 'ai4land_enddef')
  if (len_trim(read_restart) > 0) then
    call ai4land_read_restart(comp, read_restart, ierr)
    call check_plugin(ierr, 'ai4land_read_restart(' // trim(read_restart) // ')')
  end if
  call ai4land_local_size(comp, ncells, ierr)
  call check_plugin(ierr, 'ai4land_local_size')
  if (ncells /= int(me%ni, 8) * me%nj) call fail(99, 'ai4land_local_size disagrees with the box')
  call ai4land_field_levels(comp, 'landuse_fraction', ncls, ierr)
  call check_plugin(ierr, "ai4land_field_levels('landuse_fraction')")
  call ai4land_field_levels(comp, 'lai', nlai, ierr)
  call check_plugin(ierr, "ai4land_field_levels('lai')")
  if (nlai /= 1) call fail(99, "expected one level for 'lai'")
  allocate(class_names(ncls))
  call get_class_names(comp, class_names)
  all_names = ''
  do k = 1, ncls
    all_names = all_names // ' ' // trim(class_names(k))
  end do
  all_names = all_names(2:)  ! space-separated, like CF flag_meanings

  allocate(lu(me%ni, me%nj, ncls), lai(me%ni, me%nj), work(me%ni, me%nj, 1), unc(me%ni, me%nj, 1))
  lu = 0.0_dp
  unc = 0.0_dp
  lai = 0.0
  if (rank == 0) then
    allocate(lu_global(nlon, nlat, ncls), lai_global(nlon, nlat, 1), unc_global(nlon, nlat, 1), weight(nlon, nlat))
    do j = 1, nlat
      weight(:, j) = cos((-90.0_dp + (j - 0.5_dp) * 180.0_dp / nlat) * deg)
    end do
    weight = weight / sum(weight)
    call create_output()
    write(output_unit, '(a,i0,a,i0,a,i0,a,i0,a,i0,4a)') 'mock host: ', nlat, ' x ', nlon, ' grid on ', &
      nranks, ' ranks (', dims(1), ' x ', dims(2), ' boxes), ', trim(step_frequency), ' steps; classes: ', all_names
  else
    allocate(lu_global(1, 1, ncls), lai_global(1, 1, 1), unc_global(1, 1, 1), weight(1, 1))
  end if

  ! ---- time loop (noleap calendar)
  have_lu = .false.
  lai_record = 0
  do iyear = 1, nyears
    year = start_year + iyear - 1
    lai_sum = 0.0_dp
    lai_wsum = 0.0_dp
    lai_min = huge(1.0_dp)
    lai_max = -huge(1.0_dp)
    nsteps = 0
    t0 = MPI_Wtime()
    boundary = 0.0_dp
    do month = 1, 12
      ndays = merge(days_in_month(month), 1, daily)
      do day = 1, ndays
        if (day == 1 .and. put_drivers) call put_climate(comp, year, month, lat, lon)
        t_step = MPI_Wtime()
        call ai4land_step(comp, year, month, day, 0, changed, ierr)
        call check_plugin(ierr, 'ai4land_step')
        if (month == 1 .and. day == 1) boundary = MPI_Wtime() - t_step
        nsteps = nsteps + 1
        if (iand(changed, AI4LAND_CHANGED_LANDUSE) /= 0) then
          call ai4land_get(comp, 'landuse_fraction', lu, ierr)
          call check_plugin(ierr, "ai4land_get('landuse_fraction')")
          have_lu = .true.
        end if
        if (iand(changed, AI4LAND_CHANGED_UNCERTAINTY) /= 0) then
          call ai4land_get(comp, 'landuse_uncertainty', unc, ierr)
          call check_plugin(ierr, "ai4land_get('landuse_uncertainty')")
        end if
        if (iand(changed, AI4LAND_CHANGED_LAI) /= 0) then
          call ai4land_get(comp, 'lai', lai, ierr)
          call check_plugin(ierr, "ai4land_get('lai')")
          work(:, :, 1) = real(lai, dp)
          call gather_boxes(comm, boxes, work, lai_global)
          lai_record = lai_record + 1
          if (rank == 0) then
            call write_lai(lai_record, (iyear - 1) * 365 + day_of_year(month, day) - 1)
            lai_sum = lai_sum + sum(weight * lai_global(:, :, 1))
            lai_wsum = lai_wsum + 1.0_dp
            lai_min = min(lai_min, minval(lai_global))
            lai_max = max(lai_max, maxval(lai_global))
          end if
        end if
        call host_work(host_seconds_per_step)
      end do
    end do
    if (have_lu) call gather_boxes(comm, boxes, lu, lu_global)
    if (have_lu) call gather_boxes(comm, boxes, unc, unc_global)
    if (rank == 0) call year_summary()
  end do

  if (len_trim(write_restart) > 0) then
    call ai4land_write_restart(comp, write_restart, ierr)
    call check_plugin(ierr, 'ai4land_write_restart(' // trim(write_restart) // ')')
  end if
  call ai4land_finalize(comp, ierr)
  call check_plugin(ierr, 'ai4land_finalize')
  if (rank == 0) then
    call end_time_records(ncid, var_time_bnds, lai_record, 365 * nyears)
    call check_nc(nf90_close(ncid), 'close')
  end if
  call MPI_Comm_free(comm, mpierr)
  call MPI_Finalize(mpierr)

contains

  !> Create the output file: CF coordinates with bounds, the class axis, the fields' definitions.
  subroutine create_output()
    call check_nc(nf90_create(trim(output_file), ior(NF90_CLOBBER, NF90_NETCDF4), ncid), &
                  'create ' // trim(output_file))
    call check_nc(nf90_def_dim(ncid, 'lon', nlon, dim_lon), 'def_dim lon')
    call check_nc(nf90_def_dim(ncid, 'lat', nlat, dim_lat), 'def_dim lat')
    call check_nc(nf90_def_dim(ncid, 'nv', 2, dim_nv), 'def_dim nv')
    call check_nc(nf90_def_dim(ncid, 'year', nyears, dim_year), 'def_dim year')
    call check_nc(nf90_def_dim(ncid, 'time', NF90_UNLIMITED, dim_time), 'def_dim time')
    call def_class_axis(ncid, ncls, dim_cls, var_cls, var_name)

    call check_nc(nf90_def_var(ncid, 'lon', NF90_DOUBLE, [dim_lon], var_lon), 'def_var lon')
    call put_cf_attributes(ncid, var_lon, standard_name='longitude', units='degrees_east', axis='X', bounds='lon_bnds')
    call check_nc(nf90_def_var(ncid, 'lon_bnds', NF90_DOUBLE, [dim_nv, dim_lon], var_lon_bnds), 'def_var lon_bnds')
    call check_nc(nf90_def_var(ncid, 'lat', NF90_DOUBLE, [dim_lat], var_lat), 'def_var lat')
    call put_cf_attributes(ncid, var_lat, standard_name='latitude', units='degrees_north', axis='Y', bounds='lat_bnds')
    call check_nc(nf90_def_var(ncid, 'lat_bnds', NF90_DOUBLE, [dim_nv, dim_lat], var_lat_bnds), 'def_var lat_bnds')
    call def_time_axis(ncid, 'year', dim_year, dim_nv, start_year, 'model year of the land-use state', &
                       var_year, var_year_bnds)
    call def_time_axis(ncid, 'time', dim_time, dim_nv, start_year, 'step at which the host received the LAI', &
                       var_time, var_time_bnds)

    call check_nc(nf90_def_var(ncid, 'landuse_fraction', NF90_DOUBLE, [dim_lon, dim_lat, dim_cls, dim_year], &
                               var_lu), 'def_var landuse_fraction')
    call put_cf_attributes(ncid, var_lu, standard_name='area_fraction', &
                           long_name='land-use class fraction of the host cell', units='1', &
                           cell_methods='area: mean year: mean', coordinates='class_name')
    call check_nc(nf90_put_att(ncid, var_lu, 'class_names', all_names), 'att')
    call check_nc(nf90_put_att(ncid, var_lu, '_FillValue', NF90_FILL_DOUBLE), 'att')
    call check_nc(nf90_def_var(ncid, 'landuse_uncertainty', NF90_DOUBLE, [dim_lon, dim_lat, dim_year], var_unc), &
                  'def_var landuse_uncertainty')
    call put_cf_attributes(ncid, var_unc, units='1', cell_methods='area: mean where land year: mean', long_name= &
                           'land-use predictive uncertainty: class-probability entropy / log(7), mean over the land')
    call check_nc(nf90_put_att(ncid, var_unc, '_FillValue', NF90_FILL_DOUBLE), 'att')
    call check_nc(nf90_def_var(ncid, 'lai', NF90_FLOAT, [dim_lon, dim_lat, dim_time], var_lai), 'def_var lai')
    call put_cf_attributes(ncid, var_lai, standard_name='leaf_area_index', long_name='leaf area index (m2 m-2)', &
                           units='1', cell_methods='area: mean time: mean')
    call check_nc(nf90_put_att(ncid, var_lai, '_FillValue', NF90_FILL_FLOAT), 'att')

    call check_nc(nf90_put_att(ncid, NF90_GLOBAL, 'Conventions', cf_conventions), 'att')
    call check_nc(nf90_put_att(ncid, NF90_GLOBAL, 'title', 'ai4land Fortran mock host output'), 'att')
    call check_nc(nf90_put_att(ncid, NF90_GLOBAL, 'source', 'ai4land_mock_host'), 'att')
    call check_nc(nf90_put_att(ncid, NF90_GLOBAL, 'mpi_ranks', nranks), 'att')
    call check_nc(nf90_put_att(ncid, NF90_GLOBAL, 'step_frequency', trim(step_frequency)), 'att')
    call check_nc(nf90_enddef(ncid), 'enddef')

    call put_axis(ncid, var_lon, var_lon_bnds, [(-180.0_dp + (i - 0.5_dp) * 360.0_dp / nlon, i = 1, nlon)], &
                  [(-180.0_dp + (i - 1) * 360.0_dp / nlon, i = 1, nlon)], &
                  [(-180.0_dp + i * 360.0_dp / nlon, i = 1, nlon)])
    call put_axis(ncid, var_lat, var_lat_bnds, [(-90.0_dp + (j - 0.5_dp) * 180.0_dp / nlat, j = 1, nlat)], &
                  [(-90.0_dp + (j - 1) * 180.0_dp / nlat, j = 1, nlat)], &
                  [(-90.0_dp + j * 180.0_dp / nlat, j = 1, nlat)])
    call put_axis(ncid, var_year, var_year_bnds, [(365.0_dp * (i - 1), i = 1, nyears)], &
                  [(365.0_dp * (i - 1), i = 1, nyears)], [(365.0_dp * i, i = 1, nyears)])
    call put_class_axis(ncid, var_cls, var_name, class_names)
  end subroutine create_output

  !> Write LAI record `record` of the gathered `lai_global`, and its time.
  subroutine write_lai(record, day_index)
    integer, intent(in) :: record     !! the LAI record, 1-based
    integer, intent(in) :: day_index  !! its time: days since 1 January of start_year
    call put_time_record(ncid, var_time, var_time_bnds, record, day_index)
    call check_nc(nf90_put_var(ncid, var_lai, real(lai_global, 4), start=[1, 1, record], &
                               count=[nlon, nlat, 1]), 'put lai')
  end subroutine write_lai

  subroutine year_summary()
    write(num, '(i0)') year
    summary = 'year ' // trim(num) // ':'
    if (have_lu) then
      call check_nc(nf90_put_var(ncid, var_lu, lu_global, start=[1, 1, 1, iyear], &
                                 count=[nlon, nlat, ncls, 1]), 'put landuse_fraction')
      call check_nc(nf90_put_var(ncid, var_unc, unc_global(:, :, 1), start=[1, 1, iyear], &
                                 count=[nlon, nlat, 1]), 'put landuse_uncertainty')
      do k = 1, ncls
        write(num, '(f6.4)') sum(weight * lu_global(:, :, k))
        summary = summary // ' ' // underscored(class_names(k)) // ' ' // trim(num)
      end do
    else
      summary = summary // ' no land use received yet'
    end if
    if (lai_wsum > 0.0_dp) then
      write(num, '(f7.3)') lai_sum / lai_wsum
      summary = summary // ' | mean LAI ' // trim(adjustl(num))
      write(num, '(f7.3)') lai_min
      summary = summary // ' (min ' // trim(adjustl(num))
      write(num, '(f7.3)') lai_max
      summary = summary // ', max ' // trim(adjustl(num)) // ')'
    else
      summary = summary // ' | no LAI this year'
    end if
    write(num, '(i0)') nsteps
    summary = summary // ' [' // trim(num) // ' steps, '
    write(num, '(f10.2)') MPI_Wtime() - t0
    summary = summary // trim(adjustl(num)) // ' s]'
    write(num, '(f10.3)') boundary
    write(output_unit, '(a)') summary // ' year-boundary step ' // trim(adjustl(num)) // ' s'
    flush(output_unit)
    call check_nc(nf90_sync(ncid), 'sync')
  end subroutine year_summary

  !> Stand-in for the host's own integration: compute for about ``seconds`` of wall time.
  subroutine host_work(seconds)
    real(dp), intent(in) :: seconds  !! wall time to spend, s (0: return at once)
    real(dp) :: until, x
    integer :: n
    until = MPI_Wtime() + seconds
    x = 1.0_dp
    do while (MPI_Wtime() < until)
      do n = 1, 10000
        x = x * 1.0000001_dp + 1.0e-9_dp
      end do
    end do
    if (x < 0.0_dp) print *, x  ! keep the loop
  end subroutine host_work

  function underscored(text) result(out)
    character(len=*), intent(in) :: text
    character(len=:), allocatable :: out
    integer :: c
    out = trim(text)
    do c = 1, len(out)
      if (out(c:c) == ' ') out(c:c) = '_'
    end do
  end function underscored

end program ai4land_mock_host
