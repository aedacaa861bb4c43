!> Shared routines of the Fortran mock hosts (mock_host.F90: lat-lon boxes; mock_host_points.F90:
!! an unstructured host given by points): errors, the calendar, gathering, the analytic climate.
module mock_host_support
  use, intrinsic :: iso_fortran_env, only: error_unit, output_unit, real64
  use mpi
  use netcdf
  use ai4land
  implicit none
  private
  public :: dp, box_t, split, box_of_rank, check_plugin, check_nc, fail, gather_boxes, &
            days_in_month, day_of_year, put_climate, open_argument_file

  integer, parameter :: dp = real64
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
    real(dp) :: doy, season, decl, phi, a, shifted, h0, toa
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
      do i = 1, size(lon)
        tas(i, j) = 299.0_dp - 55.0_dp * (lat(j) / 90.0_dp)**2 &
                    + 0.85_dp * (1.0_dp + 13.0_dp * abs(sin(phi))) * sign(1.0_dp, lat(j)) * season &
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

end module mock_host_support
