!> The dozen lines a host adds to couple the ai4land plugin (see CMakeLists.txt for linking).
!!
!!   downstream_host                          check that the plugin loads and reports errors
!!   downstream_host ai4land_in nlat nlon     also run one year: init, box partition, step, get
program downstream_host
  use mpi
  use ai4land
  implicit none
  type(ai4land_component) :: comp
  integer :: ierr, mpierr, rank, nranks, comm, nlat, nlon, j0, nj, nclass, changed, month
  real(8), allocatable :: tas(:, :), pr(:, :), rsds(:, :), fractions(:, :, :)
  real(4), allocatable :: lai(:, :)
  character(len=1024) :: namelist, arg

  call MPI_Init(mpierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, mpierr)
  call MPI_Comm_size(MPI_COMM_WORLD, nranks, mpierr)

  ! A call on a component that was never initialised fails cleanly, with a message.
  call ai4land_enddef(comp, ierr)
  if (ierr /= AI4LAND_ERR_ARGUMENT) call abort_with(ierr, 'expected AI4LAND_ERR_ARGUMENT')
  if (rank == 0) print '(a)', 'plugin loaded; error path OK: ' // ai4land_error_message()

  if (command_argument_count() >= 3) then
    call get_command_argument(1, namelist)
    call get_command_argument(2, arg)
    read(arg, *) nlat
    call get_command_argument(3, arg)
    read(arg, *) nlon
    call MPI_Comm_dup(MPI_COMM_WORLD, comm, mpierr)
    j0 = rank * nlat / nranks + 1           ! each rank owns a band of latitude rows
    nj = (rank + 1) * nlat / nranks - j0 + 1
    allocate(tas(nlon, nj), pr(nlon, nj), rsds(nlon, nj), lai(nlon, nj))

    call ai4land_init(comp, comm, namelist, ierr);                 call check('init')
    call ai4land_def_partition_box(comp, 1, j0, nlon, nj, ierr);   call check('def_partition_box')
    call ai4land_enddef(comp, ierr);                               call check('enddef')
    call ai4land_field_levels(comp, 'landuse_fraction', nclass, ierr); call check('field_levels')
    allocate(fractions(nlon, nj, nclass))
    tas = 285.0d0
    pr = 3.0d-5
    rsds = 200.0d0
    do month = 1, 12
      call ai4land_put(comp, 'tas', tas, ierr);                    call check('put tas')
      call ai4land_put(comp, 'pr', pr, ierr);                      call check('put pr')
      call ai4land_put(comp, 'rsds', rsds, ierr);                  call check('put rsds')
      call ai4land_step(comp, 2020, month, 1, 0, changed, ierr);   call check('step')
      if (iand(changed, AI4LAND_CHANGED_LANDUSE) /= 0) then
        call ai4land_get(comp, 'landuse_fraction', fractions, ierr); call check('get landuse_fraction')
      end if
      if (iand(changed, AI4LAND_CHANGED_LAI) /= 0) then
        call ai4land_get(comp, 'lai', lai, ierr);                  call check('get lai')
      end if
    end do
    call ai4land_finalize(comp, ierr);                             call check('finalize')
    print '(a,i0,a,f10.6,a,f10.6)', 'rank ', rank, ': max |sum of fractions - 1| = ', &
      maxval(abs(sum(fractions, dim=3) - 1.0d0)), ', mean LAI = ', sum(lai) / size(lai)
    call MPI_Comm_free(comm, mpierr)
  end if
  call MPI_Finalize(mpierr)

contains

  subroutine check(what)
    character(len=*), intent(in) :: what
    if (ierr /= AI4LAND_OK) call abort_with(ierr, 'ai4land ' // what // ': ' // ai4land_error_message())
  end subroutine check

  subroutine abort_with(code, message)
    integer, intent(in) :: code
    character(len=*), intent(in) :: message
    print '(a)', trim(message)
    call MPI_Abort(MPI_COMM_WORLD, max(code, 1), mpierr)
  end subroutine abort_with
end program downstream_host
