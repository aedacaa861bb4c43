!> Fortran interface of the ai4land-coupler plugin (wraps the C ABI of ai4land.h).
!!
!! Every routine returns a status in `ierr`: AI4LAND_OK (0) on success, otherwise one of the
!! AI4LAND_ERR_* constants; `ai4land_error_message()` then gives the reason.
!! Indices are 1-based here (the C ABI is 0-based). Global cell index on the host grid:
!! g = (j-1)*nlon + i, i the longitude column (west to east), j the latitude row (south to north).
!! Local storage: longitude fastest, levels slowest, e.g. `a(ni, nj, nlevels)` or `a(ncells, nlevels)`.
module ai4land
  use, intrinsic :: iso_c_binding, only: c_int, c_int64_t, c_char, c_double, c_float, &
                                         c_null_char, c_loc, c_ptr
  implicit none
  private

  include 'ai4land_status.inc'

  !> One plugin component (one per host model instance).
  type, public :: ai4land_component
    integer(c_int) :: handle = 0  !! handle of the component on the C side; 0 = not initialised
  end type ai4land_component

  public :: ai4land_init, ai4land_def_partition_box, ai4land_def_partition_points
  public :: ai4land_enddef, ai4land_local_size, ai4land_field_levels, ai4land_level_name
  public :: ai4land_put, ai4land_get, ai4land_step, ai4land_finalize, ai4land_error_message
  public :: ai4land_write_restart, ai4land_read_restart

  !> Describe the local cells as a list of 1-based global indices (default or 8-byte integers).
  interface ai4land_def_partition_points
    module procedure def_partition_points_i4, def_partition_points_i8
  end interface ai4land_def_partition_points

  !> Number of local cells, as a default or an 8-byte integer.
  interface ai4land_local_size
    module procedure local_size_i4, local_size_i8
  end interface ai4land_local_size

  !> Give the plugin a host field: real(4) or real(8) array of any rank, levels slowest.
  interface ai4land_put
    module procedure put_real4, put_real8
  end interface ai4land_put

  !> Copy a plugin field into a real(4) or real(8) array of any rank, levels slowest.
  interface ai4land_get
    module procedure get_real4, get_real8
  end interface ai4land_get

  interface
    integer(c_int) function c_init(fortran_comm, namelist_path, handle) bind(c, name='ai4land_init')
      import :: c_int, c_char
      integer(c_int), value, intent(in) :: fortran_comm
      character(kind=c_char), dimension(*), intent(in) :: namelist_path
      integer(c_int), intent(inout) :: handle
    end function c_init

    integer(c_int) function c_def_partition_box(handle, i_offset, j_offset, ni, nj) &
        bind(c, name='ai4land_def_partition_box')
      import :: c_int
      integer(c_int), value, intent(in) :: handle, i_offset, j_offset, ni, nj
    end function c_def_partition_box

    integer(c_int) function c_def_partition_points(handle, global_index, n) &
        bind(c, name='ai4land_def_partition_points')
      import :: c_int, c_int64_t
      integer(c_int), value, intent(in) :: handle
      integer(c_int64_t), dimension(*), intent(in) :: global_index
      integer(c_int64_t), value, intent(in) :: n
    end function c_def_partition_points

    integer(c_int) function c_enddef(handle) bind(c, name='ai4land_enddef')
      import :: c_int
      integer(c_int), value, intent(in) :: handle
    end function c_enddef

    integer(c_int) function c_local_size(handle, ncells) bind(c, name='ai4land_local_size')
      import :: c_int, c_int64_t
      integer(c_int), value, intent(in) :: handle
      integer(c_int64_t), intent(out) :: ncells
    end function c_local_size

    integer(c_int) function c_field_levels(handle, name, nlevels) bind(c, name='ai4land_field_levels')
      import :: c_int, c_char
      integer(c_int), value, intent(in) :: handle
      character(kind=c_char), dimension(*), intent(in) :: name
      integer(c_int), intent(out) :: nlevels
    end function c_field_levels

    integer(c_int) function c_level_name(handle, name, level, buf, buflen) bind(c, name='ai4land_level_name')
      import :: c_int, c_char
      integer(c_int), value, intent(in) :: handle, level, buflen
      character(kind=c_char), dimension(*), intent(in) :: name
      character(kind=c_char), dimension(*), intent(inout) :: buf
    end function c_level_name

    integer(c_int) function c_put_double(handle, name, values, n) bind(c, name='ai4land_put_double')
      import :: c_int, c_char, c_ptr, c_int64_t
      integer(c_int), value, intent(in) :: handle
      character(kind=c_char), dimension(*), intent(in) :: name
      type(c_ptr), value, intent(in) :: values
      integer(c_int64_t), value, intent(in) :: n
    end function c_put_double

    integer(c_int) function c_put_float(handle, name, values, n) bind(c, name='ai4land_put_float')
      import :: c_int, c_char, c_ptr, c_int64_t
      integer(c_int), value, intent(in) :: handle
      character(kind=c_char), dimension(*), intent(in) :: name
      type(c_ptr), value, intent(in) :: values
      integer(c_int64_t), value, intent(in) :: n
    end function c_put_float

    integer(c_int) function c_get_double(handle, name, values, n) bind(c, name='ai4land_get_double')
      import :: c_int, c_char, c_ptr, c_int64_t
      integer(c_int), value, intent(in) :: handle
      character(kind=c_char), dimension(*), intent(in) :: name
      type(c_ptr), value, intent(in) :: values
      integer(c_int64_t), value, intent(in) :: n
    end function c_get_double

    integer(c_int) function c_get_float(handle, name, values, n) bind(c, name='ai4land_get_float')
      import :: c_int, c_char, c_ptr, c_int64_t
      integer(c_int), value, intent(in) :: handle
      character(kind=c_char), dimension(*), intent(in) :: name
      type(c_ptr), value, intent(in) :: values
      integer(c_int64_t), value, intent(in) :: n
    end function c_get_float

    integer(c_int) function c_step(handle, year, month, day, second, changed) bind(c, name='ai4land_step')
      import :: c_int
      integer(c_int), value, intent(in) :: handle, year, month, day, second
      integer(c_int), intent(out) :: changed
    end function c_step

    integer(c_int) function c_write_restart(handle, path) bind(c, name='ai4land_write_restart')
      import :: c_int, c_char
      integer(c_int), value, intent(in) :: handle
      character(kind=c_char), dimension(*), intent(in) :: path
    end function c_write_restart

    integer(c_int) function c_read_restart(handle, path) bind(c, name='ai4land_read_restart')
      import :: c_int, c_char
      integer(c_int), value, intent(in) :: handle
      character(kind=c_char), dimension(*), intent(in) :: path
    end function c_read_restart

    integer(c_int) function c_finalize(handle) bind(c, name='ai4land_finalize')
      import :: c_int
      integer(c_int), value, intent(in) :: handle
    end function c_finalize

    integer(c_int) function c_error_message(buf, buflen) bind(c, name='ai4land_error_message')
      import :: c_int, c_char
      character(kind=c_char), dimension(*), intent(inout) :: buf
      integer(c_int), value, intent(in) :: buflen
    end function c_error_message

    integer(c_int) function c_error_message_length() bind(c, name='ai4land_error_message_length')
      import :: c_int
    end function c_error_message_length
  end interface

contains

  !> Create the plugin component on the host communicator and read its namelist (collective).
  subroutine ai4land_init(comp, comm, namelist_path, ierr)
    type(ai4land_component), intent(inout) :: comp  !! the component; must not be initialised yet
    integer, intent(in) :: comm                     !! host communicator, Fortran INTEGER handle (mpi_f08: comm%MPI_VAL)
    character(len=*), intent(in) :: namelist_path   !! path of the file holding &ai4land_nml
    integer, intent(out) :: ierr                    !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    ierr = int(c_init(int(comm, c_int), c_string(namelist_path), comp%handle))
  end subroutine ai4land_init

  !> Describe the local cells as a box of ni x nj cells starting at (i_start, j_start), 1-based.
  subroutine ai4land_def_partition_box(comp, i_start, j_start, ni, nj, ierr)
    type(ai4land_component), intent(in) :: comp  !! the initialised component
    integer, intent(in) :: i_start               !! first longitude column of the box (1-based, west to east)
    integer, intent(in) :: j_start               !! first latitude row of the box (1-based, south to north)
    integer, intent(in) :: ni                    !! number of longitude columns in the box
    integer, intent(in) :: nj                    !! number of latitude rows in the box
    integer, intent(out) :: ierr                 !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    ierr = int(c_def_partition_box(comp%handle, int(i_start - 1, c_int), int(j_start - 1, c_int), &
                                   int(ni, c_int), int(nj, c_int)))
  end subroutine ai4land_def_partition_box

  !> Describe the local cells by their 1-based global indices (default integers).
  subroutine def_partition_points_i4(comp, global_index, ierr)
    type(ai4land_component), intent(in) :: comp       !! the initialised component
    integer(4), dimension(:), intent(in) :: global_index  !! 1-based global indices (j-1)*nlon + i, in local order
    integer, intent(out) :: ierr                      !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    integer(c_int64_t), allocatable :: index0(:)
    allocate(index0(size(global_index)))
    index0(:) = int(global_index, c_int64_t) - 1_c_int64_t
    ierr = send_points(comp, index0)
  end subroutine def_partition_points_i4

  !> Describe the local cells by their 1-based global indices (8-byte integers).
  subroutine def_partition_points_i8(comp, global_index, ierr)
    type(ai4land_component), intent(in) :: comp       !! the initialised component
    integer(8), dimension(:), intent(in) :: global_index  !! 1-based global indices (j-1)*nlon + i, in local order
    integer, intent(out) :: ierr                      !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    integer(c_int64_t), allocatable :: index0(:)
    allocate(index0(size(global_index)))
    index0(:) = int(global_index, c_int64_t) - 1_c_int64_t
    ierr = send_points(comp, index0)
  end subroutine def_partition_points_i8

  integer function send_points(comp, index0) result(ierr)
    type(ai4land_component), intent(in) :: comp  !! the initialised component
    integer(c_int64_t), intent(in) :: index0(:)  !! 0-based global indices
    if (size(index0) > 0) then
      ierr = int(c_def_partition_points(comp%handle, index0, size(index0, kind=c_int64_t)))
    else
      ierr = int(c_def_partition_points(comp%handle, [0_c_int64_t], 0_c_int64_t))
    end if
  end function send_points

  !> Close the definition phase; all ranks' partitions are checked together (collective).
  subroutine ai4land_enddef(comp, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component with its partition defined
    integer, intent(out) :: ierr                 !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    ierr = int(c_enddef(comp%handle))
  end subroutine ai4land_enddef

  !> Number of local cells (default integer).
  subroutine local_size_i4(comp, ncells, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component with its partition defined
    integer(4), intent(out) :: ncells            !! number of local cells
    integer, intent(out) :: ierr                 !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    integer(c_int64_t) :: n
    ierr = int(c_local_size(comp%handle, n))
    ncells = int(min(n, int(huge(ncells), c_int64_t)), 4)
    if (ierr == AI4LAND_OK .and. n > huge(ncells)) ierr = AI4LAND_ERR_ARGUMENT
  end subroutine local_size_i4

  !> Number of local cells (8-byte integer).
  subroutine local_size_i8(comp, ncells, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component with its partition defined
    integer(8), intent(out) :: ncells            !! number of local cells
    integer, intent(out) :: ierr                 !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    integer(c_int64_t) :: n
    ierr = int(c_local_size(comp%handle, n))
    ncells = int(n, 8)
  end subroutine local_size_i8

  !> Number of levels of a field (8 land-use classes for 'landuse_fraction', 1 for 'lai').
  subroutine ai4land_field_levels(comp, name, nlevels, ierr)
    type(ai4land_component), intent(in) :: comp  !! the initialised component
    character(len=*), intent(in) :: name         !! field name, e.g. 'landuse_fraction'
    integer, intent(out) :: nlevels              !! number of levels of the field
    integer, intent(out) :: ierr                 !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    integer(c_int) :: n
    ierr = int(c_field_levels(comp%handle, c_string(name), n))
    nlevels = int(n)
  end subroutine ai4land_field_levels

  !> Name of one level of a field, e.g. the land-use class 'cropland'.
  subroutine ai4land_level_name(comp, name, level, level_name, ierr)
    type(ai4land_component), intent(in) :: comp  !! the initialised component
    character(len=*), intent(in) :: name         !! field name, e.g. 'landuse_fraction'
    integer, intent(in) :: level                 !! level number, 1-based
    character(len=*), intent(out) :: level_name  !! the level's name, blank-padded; too short is AI4LAND_ERR_ARGUMENT
    integer, intent(out) :: ierr                 !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    character(kind=c_char) :: buf(len(level_name) + 1)
    integer :: k
    buf = c_null_char
    ierr = int(c_level_name(comp%handle, c_string(name), int(level - 1, c_int), buf, &
                            int(size(buf), c_int)))
    level_name = ''
    do k = 1, len(level_name)
      if (buf(k) == c_null_char) exit
      level_name(k:k) = buf(k)
    end do
  end subroutine ai4land_level_name

  !> Give the plugin a host field in single precision (e.g. 'tas', 'pr', 'rsds').
  subroutine put_real4(comp, name, values, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: name         !! field name
    real(c_float), dimension(..), target, intent(in) :: values  !! nlevels*ncells values, levels slowest
    integer, intent(out) :: ierr                 !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    if (is_contiguous(values)) then  ! read/written in place, however the host declares its array
      ierr = int(c_put_float(comp%handle, c_string(name), c_loc(values), size(values, kind=c_int64_t)))
    else
      ierr = put_real4_packed(comp, name, values)
    end if
  end subroutine put_real4

  !> put_real4 of a non-contiguous array (a strided section), ranks 1 to 4: through a packed copy.
  integer function put_real4_packed(comp, name, values) result(ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: name         !! field name
    real(c_float), dimension(..), intent(in) :: values  !! the host array, not contiguous
    real(c_float), allocatable, target :: buf(:)
    select rank (values)
    rank (1)
      buf = reshape(values, [size(values)])
    rank (2)
      buf = reshape(values, [size(values)])
    rank (3)
      buf = reshape(values, [size(values)])
    rank (4)
      buf = reshape(values, [size(values)])
    rank default
      allocate(buf(0))  ! the plugin then reports the wrong size
    end select
    ierr = int(c_put_float(comp%handle, c_string(name), c_loc(buf), size(buf, kind=c_int64_t)))
  end function put_real4_packed

  !> Give the plugin a host field in double precision (e.g. 'tas', 'pr', 'rsds').
  subroutine put_real8(comp, name, values, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: name         !! field name
    real(c_double), dimension(..), target, intent(in) :: values  !! nlevels*ncells values, levels slowest
    integer, intent(out) :: ierr                 !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    if (is_contiguous(values)) then  ! read/written in place, however the host declares its array
      ierr = int(c_put_double(comp%handle, c_string(name), c_loc(values), size(values, kind=c_int64_t)))
    else
      ierr = put_real8_packed(comp, name, values)
    end if
  end subroutine put_real8

  !> put_real8 of a non-contiguous array (a strided section), ranks 1 to 4: through a packed copy.
  integer function put_real8_packed(comp, name, values) result(ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: name         !! field name
    real(c_double), dimension(..), intent(in) :: values  !! the host array, not contiguous
    real(c_double), allocatable, target :: buf(:)
    select rank (values)
    rank (1)
      buf = reshape(values, [size(values)])
    rank (2)
      buf = reshape(values, [size(values)])
    rank (3)
      buf = reshape(values, [size(values)])
    rank (4)
      buf = reshape(values, [size(values)])
    rank default
      allocate(buf(0))  ! the plugin then reports the wrong size
    end select
    ierr = int(c_put_double(comp%handle, c_string(name), c_loc(buf), size(buf, kind=c_int64_t)))
  end function put_real8_packed

  !> Copy a plugin field into a single-precision array (e.g. 'landuse_fraction', 'lai').
  subroutine get_real4(comp, name, values, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: name         !! field name
    real(c_float), dimension(..), target, intent(inout) :: values  !! nlevels*ncells values, levels slowest
    integer, intent(out) :: ierr                 !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    if (is_contiguous(values)) then  ! read/written in place, however the host declares its array
      ierr = int(c_get_float(comp%handle, c_string(name), c_loc(values), size(values, kind=c_int64_t)))
    else
      ierr = get_real4_packed(comp, name, values)
    end if
  end subroutine get_real4

  !> get_real4 of a non-contiguous array (a strided section), ranks 1 to 4: through a packed copy.
  integer function get_real4_packed(comp, name, values) result(ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: name         !! field name
    real(c_float), dimension(..), intent(inout) :: values  !! the host array, not contiguous
    real(c_float), allocatable, target :: buf(:)
    select rank (values)
    rank (1)
      buf = reshape(values, [size(values)])
    rank (2)
      buf = reshape(values, [size(values)])
    rank (3)
      buf = reshape(values, [size(values)])
    rank (4)
      buf = reshape(values, [size(values)])
    rank default
      allocate(buf(0))  ! the plugin then reports the wrong size
    end select
    ierr = int(c_get_float(comp%handle, c_string(name), c_loc(buf), size(buf, kind=c_int64_t)))
    if (ierr /= AI4LAND_OK) return
    select rank (values)
    rank (1)
      values = reshape(buf, shape(values))
    rank (2)
      values = reshape(buf, shape(values))
    rank (3)
      values = reshape(buf, shape(values))
    rank (4)
      values = reshape(buf, shape(values))
    end select
  end function get_real4_packed

  !> Copy a plugin field into a double-precision array (e.g. 'landuse_fraction', 'lai').
  subroutine get_real8(comp, name, values, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: name         !! field name
    real(c_double), dimension(..), target, intent(inout) :: values  !! nlevels*ncells values, levels slowest
    integer, intent(out) :: ierr                 !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    if (is_contiguous(values)) then  ! read/written in place, however the host declares its array
      ierr = int(c_get_double(comp%handle, c_string(name), c_loc(values), size(values, kind=c_int64_t)))
    else
      ierr = get_real8_packed(comp, name, values)
    end if
  end subroutine get_real8

  !> get_real8 of a non-contiguous array (a strided section), ranks 1 to 4: through a packed copy.
  integer function get_real8_packed(comp, name, values) result(ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: name         !! field name
    real(c_double), dimension(..), intent(inout) :: values  !! the host array, not contiguous
    real(c_double), allocatable, target :: buf(:)
    select rank (values)
    rank (1)
      buf = reshape(values, [size(values)])
    rank (2)
      buf = reshape(values, [size(values)])
    rank (3)
      buf = reshape(values, [size(values)])
    rank (4)
      buf = reshape(values, [size(values)])
    rank default
      allocate(buf(0))  ! the plugin then reports the wrong size
    end select
    ierr = int(c_get_double(comp%handle, c_string(name), c_loc(buf), size(buf, kind=c_int64_t)))
    if (ierr /= AI4LAND_OK) return
    select rank (values)
    rank (1)
      values = reshape(buf, shape(values))
    rank (2)
      values = reshape(buf, shape(values))
    rank (3)
      values = reshape(buf, shape(values))
    rank (4)
      values = reshape(buf, shape(values))
    end select
  end function get_real8_packed

  !> Advance the plugin to the model date; `changed` tells which fields got new values.
  subroutine ai4land_step(comp, year, month, day, second, changed, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    integer, intent(in) :: year                  !! model year
    integer, intent(in) :: month                 !! month, 1-12
    integer, intent(in) :: day                   !! day of the month, 1-31
    integer, intent(in) :: second                !! second of the day, 0-86399
    integer, intent(out) :: changed              !! bit set: iand(changed, AI4LAND_CHANGED_LANDUSE/LAI) /= 0
    integer, intent(out) :: ierr                 !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    integer(c_int) :: bits
    ierr = int(c_step(comp%handle, int(year, c_int), int(month, c_int), int(day, c_int), &
                      int(second, c_int), bits))
    changed = int(bits)
  end subroutine ai4land_step

  !> Write the state to a netCDF restart file, atomically (collective).
  subroutine ai4land_write_restart(comp, path, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: path         !! restart file to write (trailing blanks ignored)
    integer, intent(out) :: ierr                 !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    ierr = int(c_write_restart(comp%handle, c_string(path)))
  end subroutine ai4land_write_restart

  !> Continue from a restart file, after enddef and before the first step (collective).
  subroutine ai4land_read_restart(comp, path, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef, not yet stepped
    character(len=*), intent(in) :: path         !! restart file to read (trailing blanks ignored)
    integer, intent(out) :: ierr                 !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    ierr = int(c_read_restart(comp%handle, c_string(path)))
  end subroutine ai4land_read_restart

  !> Release the component (collective); it can be initialised again afterwards.
  subroutine ai4land_finalize(comp, ierr)
    type(ai4land_component), intent(inout) :: comp  !! the component; its handle is reset
    integer, intent(out) :: ierr                    !! status: AI4LAND_OK or an AI4LAND_ERR_* code
    ierr = int(c_finalize(comp%handle))
    comp%handle = 0
  end subroutine ai4land_finalize

  !> The last error message (empty if none).
  function ai4land_error_message() result(message)
    character(len=:), allocatable :: message  !! the message, possibly several lines (a traceback)
    character(kind=c_char), allocatable :: buf(:)
    integer :: n, k, ierr
    n = max(int(c_error_message_length()), 0)
    allocate(buf(n + 1))
    ierr = int(c_error_message(buf, int(n + 1, c_int)))
    allocate(character(len=n) :: message)
    do k = 1, n
      message(k:k) = buf(k)
    end do
    if (ierr /= AI4LAND_OK) message = ''
  end function ai4land_error_message

  !> Trimmed, NUL-terminated copy of a Fortran string.
  pure function c_string(text) result(c_text)
    character(len=*), intent(in) :: text  !! Fortran string
    character(kind=c_char, len=len_trim(text) + 1) :: c_text
    c_text = trim(text) // c_null_char
  end function c_string

end module ai4land
