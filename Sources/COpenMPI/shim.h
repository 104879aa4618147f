// Deliberately empty: this system-library target only carries OpenMPI's pkg-config flags (include path, -lmpi)
// to the CMPI shim. mpi.h is included by Sources/CMPI/cmpi.c alone.
