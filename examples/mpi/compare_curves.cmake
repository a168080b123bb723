# Run kd-mpi alone (the single-process trainer on the whole batch) and under
# `mpirun -np 2` with the same seed, then compare the two loss curves.
# Variables: KD_MPI (the program), MPIEXEC, REG (mcc or cb), WORK_DIR.
set(TOLERANCE 1e-4)  # largest |single - 2 ranks| / max(1, |single|) per step
set(ARGS --steps 60 --batch 64 --seed 7 --reg ${REG})
set(single ${WORK_DIR}/curve_${REG}_single.txt)
set(ranks ${WORK_DIR}/curve_${REG}_2ranks.txt)
file(REMOVE ${single} ${ranks})
# Containers often forbid the cross-memory-attach shared-memory copy.
set(ENV{OMPI_MCA_btl_vader_single_copy_mechanism} none)
set(ENV{OMPI_MCA_rmaps_base_oversubscribe} 1)

execute_process(COMMAND ${KD_MPI} ${ARGS} --out ${single}
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "single-process run failed (${rc}): ${err}")
endif()
execute_process(COMMAND ${MPIEXEC} --oversubscribe --allow-run-as-root -np 2
                        ${KD_MPI} ${ARGS} --out ${ranks}
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mpirun -np 2 failed (${rc}): ${err}")
endif()
execute_process(COMMAND ${KD_MPI} --compare ${single} ${ranks} ${TOLERANCE}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the 2-rank loss curve differs from the single-process one")
endif()
