!> Shared routines of the Fortran mock hosts (mock_host.F90: lat-lon boxes; mock_host_points.F90:
!! an unstructured host given by points): errors, the calendar, gathering, the analytic climate,
!! and the CF conventions of their output files (docs/outputs.md).
module mock_host_support
  use, intrinsic :: iso_fortran_env, only: error_unit, output_unit, real64
  use mpi
  use netcdf
  use ai4land
  implicit none
  private
  public :: dp, box_t, split, box_of_rank, check_plugin, check_nc, fail, gather_boxes, &
            days_in_month, day_of_year, put_climate, open_argument_file
  public :: name_len, cf_conventions, get_class_names, put_cf_attributes, def_time_axis, def_class_axis, &
            put_class_axis, put_axis, put_time_record, end_time_records

  integer, parameter :: dp = real64
  integer, parameter :: name_len = 64  ! characters of a class name in the output files
  character(len=*), parameter :: cf_conventions = 'CF-1.10'
  integer, parameter :: days_in_month(12) = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

  !> A rank's box of host cells, 1-based.
  type :: box_t
    integer :: i0 = 1, j0 = 1, ni = 0, nj = 0
  end type box_t

contains

  !> Split n items into `parts` nearly equal runs; part p (0-based) starts at `first` (1-based).
  subroutine split(n, parts, p, first, count)
    integer, intent(in) :: n, parts, p
    integer, intent(out) :: first, count
    count = n / parts + merge(1, 0, p < mod(n, parts))
    first = p * (n / parts) + min(p, mod(n, parts)) + 1
  end subroutine split

  !> Box of `rank` on a px x py process grid (longitude split px ways, latitude py ways).
  function box_of_rank(rank, px, py, nlon, nlat) result(box)
    integer, intent(in) :: rank, px, py, nlon, nlat
    type(box_t) :: box
    call split(nlon, px, mod(rank, px), box%i0, box%ni)
    call split(nlat, py, rank / px, box%j0, box%nj)
  end function box_of_rank

  !> Open the file named by the first command-line argument (the host's namelist); abort with `usage`.
  subroutine open_argument_file(usage, unit, path)
    character(len=*), intent(in) :: usage     !! the usage line printed when the argument is missing
    integer, intent(out) :: unit              !! the opened unit, to read the namelist from
    character(len=*), intent(out) :: path     !! the file's path, for messages
    character(len=1024) :: iomsg
    integer :: ios
    if (command_argument_count() < 1) call fail(2, 'usage: ' // usage)
    call get_command_argument(1, path)
    open(newunit=unit, file=trim(path), status='old', action='read', iostat=ios, iomsg=iomsg)
    if (ios /= 0) call fail(2, 'cannot open ' // trim(path) // ': ' // trim(iomsg))
  end subroutine open_argument_file

  !> Print a failure and end the whole run with `code`.
  subroutine fail(code, message)
    integer, intent(in) :: code
    character(len=*), intent(in) :: message
    integer :: rank, mpierr
    call MPI_Comm_rank(MPI_COMM_WORLD, rank, mpierr)
    write(error_unit, '(a,i0,a)') 'ai4land_mock_host[rank ', rank, ']: ' // trim(message)
    flush(error_unit)
    flush(output_unit)
    call MPI_Abort(MPI_COMM_WORLD, max(code, 1), mpierr)
    stop 1
  end subroutine fail

  !> Abort with the plugin's message if a plugin call failed.
  subroutine check_plugin(ierr, what)
    integer, intent(in) :: ierr
    character(len=*), intent(in) :: what
    character(len=16) :: code
    if (ierr == AI4LAND_OK) return
    write(code, '(i0)') ierr
    call fail(ierr, what // ' failed with status ' // trim(code) // ': ' // ai4land_error_message())
  end subroutine check_plugin

  !> Abort if a netCDF call failed.
  subroutine check_nc(status, what)
    integer, intent(in) :: status
    character(len=*), intent(in) :: what
    if (status /= NF90_NOERR) call fail(3, 'netCDF ' // what // ': ' // trim(nf90_strerror(status)))
  end subroutine check_nc

  !> Day of the year (1-365) in the noleap calendar.
  integer function day_of_year(month, day)
    integer, intent(in) :: month, day
    day_of_year = sum(days_in_month(1:month - 1)) + day
  end function day_of_year

  !> Gather each rank's box of `local(ni, nj, nlev)` into `global(nlon, nlat, nlev)` on rank 0.
  subroutine gather_boxes(comm, boxes, local, global)
    integer, intent(in) :: comm
    type(box_t), intent(in) :: boxes(0:)
    real(dp), intent(in) :: local(:, :, :)
    real(dp), intent(inout) :: global(:, :, :)
    integer :: rank, nranks, r, nlev, k, offset, mpierr
    integer, allocatable :: counts(:), displs(:)
    real(dp), allocatable :: buffer(:)
    call MPI_Comm_rank(comm, rank, mpierr)
    nranks = size(boxes)
    nlev = size(local, 3)
    allocate(counts(0:nranks - 1), displs(0:nranks - 1))
    counts = boxes%ni * boxes%nj * nlev
    displs(0) = 0
    do r = 1, nranks - 1
      displs(r) = displs(r - 1) + counts(r - 1)
    end do
    allocate(buffer(merge(sum(counts), 1, rank == 0)))
    call MPI_Gatherv(local, size(local), MPI_DOUBLE_PRECISION, buffer, counts, displs, &
                     MPI_DOUBLE_PRECISION, 0, comm, mpierr)
    if (rank /= 0) return
    do r = 0, nranks - 1
      associate (b => boxes(r))
        do k = 1, nlev
          offset = displs(r) + (k - 1) * b%ni * b%nj
          global(b%i0:b%i0 + b%ni - 1, b%j0:b%j0 + b%nj - 1, k) = &
            reshape(buffer(offset + 1:offset + b%ni * b%nj), [b%ni, b%nj])
        end do
      end associate
    end do
  end subroutine gather_boxes

  !> Put the analytic monthly climate on the local cells (Python twin: mockhost.host_climate):
  !> zonal structure like the synthetic world's, opposite seasons, +0.03 K per year from 2015.
  subroutine put_climate(comp, year, month, lat, lon)
    type(ai4land_component), intent(in) :: comp  !! the plugin component
    integer, intent(in) :: year                  !! model year
    integer, intent(in) :: month                 !! model month, 1-12
    real(dp), intent(in) :: lat(:)               !! local cell-centre latitudes, degrees
    real(dp), intent(in) :: lon(:)               !! local cell-centre longitudes, degrees
    real(dp), parameter :: pi = acos(-1.0_dp), deg = pi / 180.0_dp
    real(dp), allocatable :: tas(:, :), pr(:, :), rsds(:, :)
    real(dp) :: doy, season, decl, phi, a, shifted, h0, toa, hemisphere
    integer :: i, j, ierr
    allocate(tas(size(lon), size(lat)), pr(size(lon), size(lat)), rsds(size(lon), size(lat)))
    doy = sum(days_in_month(1:month - 1)) + days_in_month(month) / 2.0_dp
    season = -cos(2.0_dp * pi * (doy - 15.0_dp) / 365.0_dp)  ! +1 in the northern summer
    decl = 23.44_dp * deg * sin(2.0_dp * pi * (284.0_dp + doy + 1.0_dp) / 365.0_dp)
    do j = 1, size(lat)
      phi = lat(j) * deg
      a = abs(lat(j))
      shifted = lat(j) - 7.0_dp * season
      h0 = acos(min(1.0_dp, max(-1.0_dp, -tan(phi) * tan(decl))))
      toa = 1361.0_dp / pi * (h0 * sin(phi) * sin(decl) + cos(phi) * cos(decl) * sin(h0))
      hemisphere = merge(0.0_dp, sign(1.0_dp, lat(j)), lat(j) == 0.0_dp)  ! as numpy.sign: 0 on the equator
      do i = 1, size(lon)
        tas(i, j) = 299.0_dp - 55.0_dp * (lat(j) / 90.0_dp)**2 &
                    + 0.85_dp * (1.0_dp + 13.0_dp * abs(sin(phi))) * hemisphere * season &
                    + 0.03_dp * (year - 2015)
        pr(i, j) = max(1.0_dp + 6.0_dp * exp(-(shifted / 9.0_dp)**2) + 2.6_dp * exp(-((a - 48.0_dp) / 12.0_dp)**2) &
                       - 0.5_dp * exp(-((a - 25.0_dp) / 9.0_dp)**2), 0.1_dp) / 86400.0_dp
        rsds(i, j) = 0.6_dp * toa
      end do
    end do
    call ai4land_put(comp, 'tas', tas, ierr)
    call check_plugin(ierr, "ai4land_put('tas')")
    call ai4land_put(comp, 'pr', pr, ierr)
    call check_plugin(ierr, "ai4land_put('pr')")
    call ai4land_put(comp, 'rsds', rsds, ierr)
    call check_plugin(ierr, "ai4land_put('rsds')")
  end subroutine put_climate

  !> The plugin's names of the 'landuse_fraction' levels.
  subroutine get_class_names(comp, class_names)
    type(ai4land_component), intent(in) :: comp               !! the plugin component, after enddef
    character(len=name_len), intent(out) :: class_names(:)    !! one name per level, in level order
    integer :: k, ierr
    do k = 1, size(class_names)
      call ai4land_level_name(comp, 'landuse_fraction', k, class_names(k), ierr)
      call check_plugin(ierr, 'ai4land_level_name')
    end do
  end subroutine get_class_names

  !> Put the CF attributes given (each one optional) on a variable; the file is in define mode.
  subroutine put_cf_attributes(ncid, varid, standard_name, long_name, units, calendar, axis, bounds, &
                               cell_methods, coordinates)
    integer, intent(in) :: ncid                                   !! the netCDF file
    integer, intent(in) :: varid                                  !! the variable
    character(len=*), intent(in), optional :: standard_name       !! a name from the CF standard-name table
    character(len=*), intent(in), optional :: long_name           !! a description
    character(len=*), intent(in), optional :: units               !! UDUNITS units ('1': a dimensionless fraction)
    character(len=*), intent(in), optional :: calendar            !! calendar of a time coordinate
    character(len=*), intent(in), optional :: axis                !! X, Y or T
    character(len=*), intent(in), optional :: bounds              !! name of the cell-bounds variable
    character(len=*), intent(in), optional :: cell_methods        !! e.g. 'area: mean time: mean'
    character(len=*), intent(in), optional :: coordinates         !! auxiliary coordinates, blank-separated
    if (present(standard_name)) call put_text('standard_name', standard_name)
    if (present(long_name)) call put_text('long_name', long_name)
    if (present(units)) call put_text('units', units)
    if (present(calendar)) call put_text('calendar', calendar)
    if (present(axis)) call put_text('axis', axis)
    if (present(bounds)) call put_text('bounds', bounds)
    if (present(cell_methods)) call put_text('cell_methods', cell_methods)
    if (present(coordinates)) call put_text('coordinates', coordinates)
  contains
    subroutine put_text(name, value)
      character(len=*), intent(in) :: name   !! the attribute
      character(len=*), intent(in) :: value  !! its text
      call check_nc(nf90_put_att(ncid, varid, name, value), 'put_att ' // name)
    end subroutine put_text
  end subroutine put_cf_attributes

  !> Define the CF time coordinate `name(name)`, days since 1 January of `start_year` in the noleap
  !> calendar, and its bounds `name_bnds(nv, name)`; the file is in define mode.
  subroutine def_time_axis(ncid, name, dim, dim_nv, start_year, long_name, varid, bnds_id)
    integer, intent(in) :: ncid                !! the netCDF file
    character(len=*), intent(in) :: name       !! name of the coordinate, and of its dimension `dim`
    integer, intent(in) :: dim                 !! the coordinate's dimension
    integer, intent(in) :: dim_nv              !! the bounds dimension, of length 2
    integer, intent(in) :: start_year          !! the first model year: time 0 is its 1 January
    character(len=*), intent(in) :: long_name  !! what a time value marks
    integer, intent(out) :: varid              !! the coordinate variable
    integer, intent(out) :: bnds_id            !! its bounds variable
    character(len=64) :: units
    write(units, '(a,i4.4,a)') 'days since ', start_year, '-01-01 00:00:00'
    call check_nc(nf90_def_var(ncid, name, NF90_DOUBLE, [dim], varid), 'def_var ' // name)
    call put_cf_attributes(ncid, varid, standard_name='time', long_name=long_name, units=trim(units), &
                           calendar='noleap', axis='T', bounds=name // '_bnds')
    call check_nc(nf90_def_var(ncid, name // '_bnds', NF90_DOUBLE, [dim_nv, dim], bnds_id), &
                  'def_var ' // name // '_bnds')
  end subroutine def_time_axis

  !> Define the class axis: `class(class)` (1-based level) and its label `class_name(name_strlen, class)`.
  subroutine def_class_axis(ncid, ncls, dim_cls, var_cls, var_name)
    integer, intent(in) :: ncid       !! the netCDF file, in define mode
    integer, intent(in) :: ncls       !! number of classes
    integer, intent(out) :: dim_cls   !! the class dimension
    integer, intent(out) :: var_cls   !! the class index coordinate
    integer, intent(out) :: var_name  !! the class names
    integer :: dim_char
    call check_nc(nf90_def_dim(ncid, 'class', ncls, dim_cls), 'def_dim class')
    call check_nc(nf90_def_dim(ncid, 'name_strlen', name_len, dim_char), 'def_dim name_strlen')
    call check_nc(nf90_def_var(ncid, 'class', NF90_INT, [dim_cls], var_cls), 'def_var class')
    call put_cf_attributes(ncid, var_cls, long_name='land-use class index (1-based level)')
    call check_nc(nf90_def_var(ncid, 'class_name', NF90_CHAR, [dim_char, dim_cls], var_name), 'def_var class_name')
    call put_cf_attributes(ncid, var_name, long_name='land-use class name')
  end subroutine def_class_axis

  !> Put the class indices and names defined by def_class_axis; the file is in data mode.
  subroutine put_class_axis(ncid, var_cls, var_name, class_names)
    integer, intent(in) :: ncid                              !! the netCDF file
    integer, intent(in) :: var_cls                           !! the class index coordinate
    integer, intent(in) :: var_name                          !! the class names
    character(len=name_len), intent(in) :: class_names(:)    !! one name per class
    integer :: k
    call check_nc(nf90_put_var(ncid, var_cls, [(k, k = 1, size(class_names))]), 'put class')
    do k = 1, size(class_names)  ! NUL-padded (the fill value)
      call check_nc(nf90_put_var(ncid, var_name, trim(class_names(k)), start=[1, k], &
                                 count=[max(len_trim(class_names(k)), 1), 1]), 'put class_name')
    end do
  end subroutine put_class_axis

  !> Put a coordinate's values and its cell bounds; the file is in data mode.
  subroutine put_axis(ncid, varid, bnds_id, values, lower, upper)
    integer, intent(in) :: ncid          !! the netCDF file
    integer, intent(in) :: varid         !! the coordinate variable
    integer, intent(in) :: bnds_id       !! its bounds variable, (2, size(values))
    real(dp), intent(in) :: values(:)    !! the coordinate values
    real(dp), intent(in) :: lower(:)     !! each cell's first bound
    real(dp), intent(in) :: upper(:)     !! each cell's second bound
    call check_nc(nf90_put_var(ncid, varid, values), 'put coordinate')
    call check_nc(nf90_put_var(ncid, bnds_id, transpose(reshape([lower, upper], [size(values), 2]))), &
                  'put bounds')
  end subroutine put_axis

  !> Write time record `record` at `day`; its bounds start there, and so end the previous record's.
  subroutine put_time_record(ncid, varid, bnds_id, record, day)
    integer, intent(in) :: ncid      !! the netCDF file, in data mode
    integer, intent(in) :: varid     !! the time coordinate
    integer, intent(in) :: bnds_id   !! its bounds variable
    integer, intent(in) :: record    !! the record, 1-based
    integer, intent(in) :: day       !! the record's time, days since the time origin
    call check_nc(nf90_put_var(ncid, varid, [real(day, dp)], start=[record], count=[1]), 'put time')
    call check_nc(nf90_put_var(ncid, bnds_id, [real(day, dp)], start=[1, record], count=[1, 1]), 'put time_bnds')
    if (record > 1) call check_nc(nf90_put_var(ncid, bnds_id, [real(day, dp)], start=[2, record - 1], &
                                               count=[1, 1]), 'put time_bnds')
  end subroutine put_time_record

  !> End the bounds of the last time record at `day` (the end of the run).
  subroutine end_time_records(ncid, bnds_id, nrecords, day)
    integer, intent(in) :: ncid      !! the netCDF file, in data mode
    integer, intent(in) :: bnds_id   !! the time bounds variable
    integer, intent(in) :: nrecords  !! number of records written; none: nothing to end
    integer, intent(in) :: day       !! the end of the run, days since the time origin
    if (nrecords > 0) call check_nc(nf90_put_var(ncid, bnds_id, [real(day, dp)], start=[2, nrecords], &
                                                 count=[1, 1]), 'put time_bnds')
  end subroutine end_time_records

end module mock_host_support
