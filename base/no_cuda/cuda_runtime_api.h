// Stand-in for the CUDA runtime header in builds without the CUDA toolkit: the op params structs name
// cudaStream_t, which the CPU reference backend never uses. Only on the include path when the real header
// is absent (CMakeLists.txt).
#pragma once
typedef struct CUstream_st* cudaStream_t;
