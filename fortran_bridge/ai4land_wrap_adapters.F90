!> Fixed-rank adapters over the parts of the Fortran layer that f2py cannot pass itself, for the
!! f90wrap tests (tests/test_f90wrap.py; built by fortran_bridge/build_f90wrap.py, not by CMake).
!!
!! f2py has no assumed-rank arrays (`ai4land_put`/`ai4land_get` take `dimension(..)`), no
!! deferred-length character results (`ai4land_error_message()`) and no arrays of derived types
!! (`gather_boxes` takes `type(box_t) :: boxes(0:)`). Each adapter only forwards to the real
!! routine through its public (generic) name, so the generic resolution, the assumed-rank
!! `c_loc` path and the 1-based conversions of ai4land.F90 are what the tests exercise.
module ai4land_wrap_adapters
  use ai4land
  use mock_host_support, only: box_t, gather_boxes
  implicit none
  private
  public :: error_message, level_name_in, put_real8_1d, put_real8_2d, put_real4_1d, &
            get_real8_1d, get_real8_2d, get_real8_3d, get_real4_2d, gather_boxes_of, &
            unit_first_line

contains

  !> `ai4land_error_message()` into a fixed-length buffer, with the message's full length.
  subroutine error_message(message, length)
    character(len=16384), intent(out) :: message  !! the last error message, blank-padded (a literal length: f2py needs one)
    integer, intent(out) :: length                !! len(ai4land_error_message()), untruncated
    character(len=:), allocatable :: full
    full = ai4land_error_message()
    length = len(full)
    message = full
  end subroutine error_message

  !> `ai4land_level_name` into a buffer of exactly `buflen` characters (1 <= buflen <= 256).
  subroutine level_name_in(comp, name, level, buflen, level_name, ierr)
    type(ai4land_component), intent(in) :: comp  !! the initialised component
    character(len=*), intent(in) :: name         !! field name
    integer, intent(in) :: level                 !! level number, 1-based
    integer, intent(in) :: buflen                !! the length of the character variable handed to ai4land_level_name
    character(len=256), intent(out) :: level_name  !! what ai4land_level_name wrote into its first buflen characters
    integer, intent(out) :: ierr                 !! status of ai4land_level_name
    level_name = ''
    call ai4land_level_name(comp, name, level, level_name(1:buflen), ierr)
  end subroutine level_name_in

  !> `ai4land_put` with a rank-1 real(8) array.
  subroutine put_real8_1d(comp, name, values, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: name         !! field name
    real(8), intent(in) :: values(:)             !! nlevels*ncells values, levels slowest
    integer, intent(out) :: ierr                 !! status of ai4land_put
    call ai4land_put(comp, name, values, ierr)
  end subroutine put_real8_1d

  !> `ai4land_put` with a rank-2 real(8) array, e.g. a(ni, nj).
  subroutine put_real8_2d(comp, name, values, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: name         !! field name
    real(8), intent(in) :: values(:, :)          !! nlevels*ncells values, levels slowest
    integer, intent(out) :: ierr                 !! status of ai4land_put
    call ai4land_put(comp, name, values, ierr)
  end subroutine put_real8_2d

  !> `ai4land_put` with a rank-1 real(4) array.
  subroutine put_real4_1d(comp, name, values, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: name         !! field name
    real(4), intent(in) :: values(:)             !! nlevels*ncells values, levels slowest
    integer, intent(out) :: ierr                 !! status of ai4land_put
    call ai4land_put(comp, name, values, ierr)
  end subroutine put_real4_1d

  !> `ai4land_get` into a rank-1 real(8) array.
  subroutine get_real8_1d(comp, name, values, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: name         !! field name
    real(8), intent(inout) :: values(:)          !! nlevels*ncells values, levels slowest
    integer, intent(out) :: ierr                 !! status of ai4land_get
    call ai4land_get(comp, name, values, ierr)
  end subroutine get_real8_1d

  !> `ai4land_get` into a rank-2 real(8) array, e.g. a(ncells, nlevels).
  subroutine get_real8_2d(comp, name, values, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: name         !! field name
    real(8), intent(inout) :: values(:, :)       !! nlevels*ncells values, levels slowest
    integer, intent(out) :: ierr                 !! status of ai4land_get
    call ai4land_get(comp, name, values, ierr)
  end subroutine get_real8_2d

  !> `ai4land_get` into a rank-3 real(8) array, e.g. a(ni, nj, nlevels).
  subroutine get_real8_3d(comp, name, values, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: name         !! field name
    real(8), intent(inout) :: values(:, :, :)    !! nlevels*ncells values, levels slowest
    integer, intent(out) :: ierr                 !! status of ai4land_get
    call ai4land_get(comp, name, values, ierr)
  end subroutine get_real8_3d

  !> `ai4land_get` into a rank-2 real(4) array, e.g. a(ni, nj).
  subroutine get_real4_2d(comp, name, values, ierr)
    type(ai4land_component), intent(in) :: comp  !! the component after enddef
    character(len=*), intent(in) :: name         !! field name
    real(4), intent(inout) :: values(:, :)       !! nlevels*ncells values, levels slowest
    integer, intent(out) :: ierr                 !! status of ai4land_get
    call ai4land_get(comp, name, values, ierr)
  end subroutine get_real4_2d

  !> `gather_boxes` with the boxes given as four arrays (one entry per rank of `comm`).
  subroutine gather_boxes_of(comm, i0, j0, ni, nj, local, global)
    integer, intent(in) :: comm                 !! the communicator, Fortran handle
    integer, intent(in) :: i0(:)                !! first longitude column of each rank's box, 1-based
    integer, intent(in) :: j0(:)                !! first latitude row of each rank's box, 1-based
    integer, intent(in) :: ni(:)                !! longitude columns of each rank's box
    integer, intent(in) :: nj(:)                !! latitude rows of each rank's box
    real(8), intent(in) :: local(:, :, :)       !! this rank's values, local(ni, nj, nlev)
    real(8), intent(inout) :: global(:, :, :)   !! global(nlon, nlat, nlev), filled on rank 0
    type(box_t) :: boxes(0:size(i0) - 1)
    boxes%i0 = i0
    boxes%j0 = j0
    boxes%ni = ni
    boxes%nj = nj
    call gather_boxes(comm, boxes, local, global)
  end subroutine gather_boxes_of

  !> What a host sees of an opened unit: its file, whether it reads, its first line; then closes it.
  subroutine unit_first_line(unit, name, action, line, ios)
    integer, intent(in) :: unit                  !! an opened unit
    character(len=1024), intent(out) :: name     !! the file connected to the unit
    character(len=16), intent(out) :: action     !! 'READ', 'WRITE', 'READWRITE' or 'UNDEFINED' (not open)
    character(len=1024), intent(out) :: line     !! the file's first line
    integer, intent(out) :: ios                  !! iostat of the read
    logical :: opened
    name = ''
    line = ''
    inquire(unit=unit, opened=opened, name=name, action=action)
    if (.not. opened) then
      action = 'UNDEFINED'
      ios = -1
      return
    end if
    read(unit, '(a)', iostat=ios) line
    close(unit)
  end subroutine unit_first_line

end module ai4land_wrap_adapters
