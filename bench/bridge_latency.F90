!> Latency of the ai4land bridge seen from Fortran: empty calls, put/get, and where the data go.
!!
!!   mpirun -n 1 ai4land_bench_bridge [ncalls [nvalues [nputs]]]
!!
!! Meant to run with the do-nothing component of bench/bridge_bench_component.py, which
!! bench/bench_bridge.py injects through a sitecustomize shim (with the real component,
!! ai4land_init fails: there is no namelist). Defaults: ncalls = 200000 empty calls,
!! nvalues = 1000000 real(8) values per put/get, nputs = ncalls / 10 puts and gets.
!!
!! Prints one line per result on rank 0, `ai4land_bench key=value ...`:
!!   what=empty_call call=<routine> calls=N seconds=S us_per_call=U
!!   what=put|get host=<kind> n=<values> calls=N seconds=S us_per_call=U
!!   what=fortran_copy n=<values> calls=N seconds=S us_per_call=U   (y = x, what one copy costs)
!!   op=put|get what=probe host=<kind> name=<field> n=<values> fortran_address=A first=F last=L
!! host=<kind> says how the host declares the array it hands over: `contiguous` (an allocatable,
!! explicit-shape or CONTIGUOUS array) or `assumed_shape` (a plain `x(:)` dummy argument, for
!! which the compiler may pass a packed copy to the CONTIGUOUS dummies of the ai4land module).
!! A probe line gives the address of the Fortran array and its first and last values (set by
!! Fortran before a put, read back after a get): the component records what it was handed, and
!! bench_bridge.py compares the two. Any plugin error aborts with the plugin's message.
program ai4land_bench_bridge
  use, intrinsic :: iso_c_binding, only: c_double, c_intptr_t, c_loc
  use, intrinsic :: iso_fortran_env, only: error_unit, int64, output_unit
  use mpi
  use ai4land
  implicit none

  integer, parameter :: dp = c_double
  integer, parameter :: warmup = 1000
  !> How the host declares the array it hands over: `contiguous` (an allocatable, an explicit-shape
  !! or a CONTIGUOUS dummy; passed as it is) or `assumed_shape` (a plain `x(:)` dummy).
  character(len=16), parameter :: HOST_NAMES(2) = [character(len=16) :: 'contiguous', 'assumed_shape']
  integer, parameter :: HOST_CONTIGUOUS = 1
  type(ai4land_component) :: comp
  integer :: mpierr, ierr, rank, nranks, comm, k, nlevels, changed, host
  integer :: ncalls = 200000, nvalues = 1000000, nputs = -1
  integer(int64) :: ncells
  real(dp), allocatable, target :: x(:), y(:), one(:)
  real(dp) :: t0, checksum
  character(len=64) :: arg

  call MPI_Init(mpierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, mpierr)
  call MPI_Comm_size(MPI_COMM_WORLD, nranks, mpierr)
  call MPI_Comm_dup(MPI_COMM_WORLD, comm, mpierr)
  if (command_argument_count() >= 1) ncalls = int_argument(1)
  if (command_argument_count() >= 2) nvalues = int_argument(2)
  if (command_argument_count() >= 3) nputs = int_argument(3)
  if (nputs < 0) nputs = max(ncalls / 10, 1)
  if (ncalls < 1 .or. nvalues < 2 .or. nputs < 1) call fail(2, 'ncalls, nputs must be >= 1 and nvalues >= 2')

  allocate(x(nvalues), y(nvalues), one(1))
  x = 1.0_dp
  one = 1.0_dp

  ! ---- set-up: the bench component takes any namelist path and one row of nvalues cells per rank
  call ai4land_init(comp, comm, 'unused-by-the-bench-component', ierr)
  call check(ierr, 'ai4land_init (is the bench component injected? run bench/bench_bridge.py)')
  call ai4land_def_partition_box(comp, 1, rank + 1, nvalues, 1, ierr)
  call check(ierr, 'ai4land_def_partition_box')
  call ai4land_enddef(comp, ierr)
  call check(ierr, 'ai4land_enddef')
  call ai4land_local_size(comp, ncells, ierr)
  call check(ierr, 'ai4land_local_size')
  if (ncells /= nvalues) call fail(1, 'local size does not round-trip')
  call ai4land_step(comp, 2015, 1, 1, 0, changed, ierr)
  call check(ierr, 'ai4land_step')

  ! ---- where the data go, before the timings
  do host = 1, size(HOST_NAMES)
    call probe(host, x, 'probe_large', 4242.0_dp)
    call probe(host, one, 'probe_one', 17.0_dp)
  end do

  ! ---- warm-up of every timed path
  do k = 1, warmup
    call ai4land_local_size(comp, ncells, ierr)
    call ai4land_field_levels(comp, 'timed', nlevels, ierr)
    do host = 1, size(HOST_NAMES)
      call put(host, one, 'timed')
      call get(host, one, 'timed')
    end do
  end do
  call check(ierr, 'warm-up')

  ! ---- empty calls: into Python and straight back
  call MPI_Barrier(comm, mpierr)
  t0 = MPI_Wtime()
  do k = 1, ncalls
    call ai4land_local_size(comp, ncells, ierr)
    if (ierr /= AI4LAND_OK) exit
  end do
  call check(ierr, 'ai4land_local_size')
  call report('what=empty_call call=ai4land_local_size', ncalls, MPI_Wtime() - t0)

  t0 = MPI_Wtime()
  do k = 1, ncalls
    call ai4land_field_levels(comp, 'timed', nlevels, ierr)
    if (ierr /= AI4LAND_OK) exit
  end do
  call check(ierr, 'ai4land_field_levels')
  call report('what=empty_call call=ai4land_field_levels', ncalls, MPI_Wtime() - t0)

  ! ---- put and get of one value, then of nvalues (zero copies: the same cost), both host kinds
  do host = 1, size(HOST_NAMES)
    call time_put_get(host, one, nputs)
    call time_put_get(host, x, max(nputs / (1 + (host - 1) * 100), 10))  ! copies are slow: fewer calls
  end do

  ! ---- what one copy of the array costs, for comparison
  t0 = MPI_Wtime()
  do k = 1, max(nputs / 100, 10)
    y = x
    x(mod(k, nvalues) + 1) = real(k, dp)  ! every copy differs, so none can be skipped
  end do
  call report('what=fortran_copy n=' // itoa(int(nvalues, int64)), max(nputs / 100, 10), MPI_Wtime() - t0)
  checksum = y(1) + y(nvalues)

  ! ---- where the data go, after the timings
  do host = 1, size(HOST_NAMES)
    call probe(host, x, 'probe_large_after', -4242.0_dp)
  end do

  call ai4land_finalize(comp, ierr)
  call check(ierr, 'ai4land_finalize')
  if (rank == 0) write(output_unit, '(a, es12.5)') 'ai4land_bench what=done checksum=', checksum
  call MPI_Comm_free(comm, mpierr)
  call MPI_Finalize(mpierr)

contains

  !> Put and get of `values` through fields named 'timed' (the component does nothing with them).
  subroutine time_put_get(host, values, calls)
    integer, intent(in) :: host                               !! how the host declares its array: index in HOST_NAMES
    real(dp), contiguous, intent(inout), target :: values(:)  !! host array handed to the plugin
    integer, intent(in) :: calls                              !! number of puts and of gets to time
    real(dp) :: start
    integer :: i
    character(len=:), allocatable :: tag
    tag = ' host=' // trim(HOST_NAMES(host)) // ' n=' // itoa(size(values, kind=int64))
    start = MPI_Wtime()
    do i = 1, calls
      call put(host, values, 'timed')
    end do
    call report('what=put' // tag, calls, MPI_Wtime() - start)
    start = MPI_Wtime()
    do i = 1, calls
      call get(host, values, 'timed')
    end do
    call report('what=get' // tag, calls, MPI_Wtime() - start)
  end subroutine time_put_get

  !> One put and one get of `values` as field `name`; prints the array's address and the values
  !! at both ends: set here before the put, written by the component in the get.
  subroutine probe(host, values, name, mark)
    integer, intent(in) :: host                               !! how the host declares its array: index in HOST_NAMES
    real(dp), contiguous, intent(inout), target :: values(:)  !! host array handed to the plugin
    character(len=*), intent(in) :: name                      !! field name, starting with 'probe' (the component records it)
    real(dp), intent(in) :: mark                              !! value put into the first element (minus it into the last)
    integer :: n
    character(len=:), allocatable :: head, field
    n = size(values)
    field = name // '_' // trim(HOST_NAMES(host))
    head = 'what=probe host=' // trim(HOST_NAMES(host)) // ' name=' // field // ' n=' // itoa(int(n, int64)) // &
           ' fortran_address=' // itoa(int(transfer(c_loc(values), 0_c_intptr_t), int64))
    values(1) = mark
    values(n) = -mark
    if (n == 1) values(n) = mark
    call put(host, values, field)
    if (rank == 0) write(output_unit, '(2a, 2(a, es24.16))') 'ai4land_bench op=put ', head, &
                                                             ' first=', values(1), ' last=', values(n)
    call get(host, values, field)
    if (rank == 0) write(output_unit, '(2a, 2(a, es24.16))') 'ai4land_bench op=get ', head, &
                                                             ' first=', values(1), ' last=', values(n)
  end subroutine probe

  !> ai4land_put of `values` as a host declaring its array as HOST_NAMES(host) would.
  subroutine put(host, values, name)
    integer, intent(in) :: host                            !! index in HOST_NAMES
    real(dp), contiguous, intent(in), target :: values(:)  !! host array handed to the plugin
    character(len=*), intent(in) :: name                   !! field name
    if (host == HOST_CONTIGUOUS) then
      call ai4land_put(comp, name, values, ierr)
    else
      call put_assumed_shape(values, name)
    end if
    call check(ierr, 'ai4land_put(' // name // ')')
  end subroutine put

  !> ai4land_get into `values` as a host declaring its array as HOST_NAMES(host) would.
  subroutine get(host, values, name)
    integer, intent(in) :: host                               !! index in HOST_NAMES
    real(dp), contiguous, intent(inout), target :: values(:)  !! host array the plugin writes
    character(len=*), intent(in) :: name                      !! field name
    if (host == HOST_CONTIGUOUS) then
      call ai4land_get(comp, name, values, ierr)
    else
      call get_assumed_shape(values, name)
    end if
    call check(ierr, 'ai4land_get(' // name // ')')
  end subroutine get

  !> ai4land_put from a routine whose array is a plain assumed-shape dummy, as in many host models.
  subroutine put_assumed_shape(values, name)
    real(dp), intent(in), target :: values(:)  !! host array handed to the plugin, not declared contiguous
    character(len=*), intent(in) :: name       !! field name
    call ai4land_put(comp, name, values, ierr)
  end subroutine put_assumed_shape

  !> ai4land_get into a plain assumed-shape dummy, as in many host models.
  subroutine get_assumed_shape(values, name)
    real(dp), intent(inout), target :: values(:)  !! host array the plugin writes, not declared contiguous
    character(len=*), intent(in) :: name          !! field name
    call ai4land_get(comp, name, values, ierr)
  end subroutine get_assumed_shape

  !> One result line on rank 0: total seconds and microseconds per call.
  subroutine report(what, calls, seconds)
    character(len=*), intent(in) :: what  !! key=value pairs naming the measurement
    integer, intent(in) :: calls          !! number of calls timed
    real(dp), intent(in) :: seconds       !! wall time of all of them
    if (rank /= 0) return
    write(output_unit, '(4a, es12.5, a, f0.4)') 'ai4land_bench ', what, ' calls=' // itoa(int(calls, int64)), &
      ' seconds=', seconds, ' us_per_call=', 1.0e6_dp * seconds / calls
    flush(output_unit)
  end subroutine report

  !> Stop on a plugin error with its message.
  subroutine check(status, what)
    integer, intent(in) :: status         !! status returned by the plugin
    character(len=*), intent(in) :: what  !! the call that returned it
    if (status /= AI4LAND_OK) call fail(status, what // ' failed: ' // ai4land_error_message())
  end subroutine check

  !> Print a message and abort all ranks with `code`.
  subroutine fail(code, message)
    integer, intent(in) :: code              !! exit code of the run
    character(len=*), intent(in) :: message  !! why
    integer :: e
    write(error_unit, '(a)') 'ai4land_bench_bridge: ' // message
    call MPI_Abort(MPI_COMM_WORLD, code, e)
  end subroutine fail

  !> The command-line argument at `position` as an integer (abort if it is none).
  integer function int_argument(position) result(value)
    integer, intent(in) :: position  !! argument number, 1-based
    integer :: ios
    call get_command_argument(position, arg)
    read(arg, *, iostat=ios) value
    if (ios /= 0) call fail(2, 'usage: ai4land_bench_bridge [ncalls [nvalues [nputs]]]; bad argument ' // trim(arg))
  end function int_argument

  !> Decimal text of an integer.
  function itoa(i) result(text)
    integer(int64), intent(in) :: i  !! the integer
    character(len=:), allocatable :: text
    character(len=24) :: buf
    write(buf, '(i0)') i
    text = trim(buf)
  end function itoa

end program ai4land_bench_bridge
