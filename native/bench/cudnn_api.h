// The part of cuDNN's legacy convolution API that the benchmark calls, declared here from the
// cuDNN 9 API reference so that no cuDNN header is needed to build: opaque handle types, the
// enum values we pass or read, the algorithm-performance record, and one function-pointer type
// per entry point. The library itself is opened at run time (cudnn_loader.h).
//
// Enum values (cuDNN 9 reference, unchanged since cuDNN 7/8):
//   cudnnStatus_t         CUDNN_STATUS_SUCCESS = 0
//   cudnnTensorFormat_t   CUDNN_TENSOR_NCHW = 0
//   cudnnDataType_t       CUDNN_DATA_FLOAT = 0
//   cudnnConvolutionMode_t CUDNN_CONVOLUTION = 0, CUDNN_CROSS_CORRELATION = 1
//   cudnnMathType_t       CUDNN_DEFAULT_MATH = 0, CUDNN_TENSOR_OP_MATH = 1,
//                         CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION = 2, CUDNN_FMA_MATH = 3
// Versions: cudnnGetVersion() is MAJOR*10000 + MINOR*100 + PATCH from cuDNN 9 on (90100 is
// 9.1.0) and MAJOR*1000 + MINOR*100 + PATCH before (8907 is 8.9.7).
#pragma once
#include <cstddef>

namespace cn::cudnn {

using Status = int;
using Handle = struct HandleOpaque*;
using TensorDesc = struct TensorDescOpaque*;
using FilterDesc = struct FilterDescOpaque*;
using ConvDesc = struct ConvDescOpaque*;
using Stream = void*;  // cudaStream_t

constexpr Status kSuccess = 0;
constexpr int kTensorNchw = 0;
constexpr int kDataFloat = 0;
constexpr int kCrossCorrelation = 1;
constexpr int kDefaultMath = 0;
constexpr int kTensorOpMath = 1;
constexpr int kTensorOpMathAllowConversion = 2;
constexpr int kFmaMath = 3;

// cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t share this layout: the algorithm, its status,
// its time in ms, its workspace in bytes, its determinism, its math type, three reserved ints.
struct AlgoPerf {
  int algo;
  Status status;
  float time;
  size_t memory;
  int determinism;
  int mathType;
  int reserved[3];
};

using GetVersionFn = size_t (*)();
using GetErrorStringFn = const char* (*)(Status);
using CreateFn = Status (*)(Handle*);
using DestroyFn = Status (*)(Handle);
using SetStreamFn = Status (*)(Handle, Stream);
using CreateTensorDescFn = Status (*)(TensorDesc*);
using SetTensor4dFn = Status (*)(TensorDesc, int format, int dataType, int n, int c, int h, int w);
using DestroyTensorDescFn = Status (*)(TensorDesc);
using CreateFilterDescFn = Status (*)(FilterDesc*);
using SetFilter4dFn = Status (*)(FilterDesc, int dataType, int format, int k, int c, int h, int w);
using DestroyFilterDescFn = Status (*)(FilterDesc);
using CreateConvDescFn = Status (*)(ConvDesc*);
using SetConv2dFn = Status (*)(ConvDesc, int padH, int padW, int strideH, int strideW, int dilationH,
                               int dilationW, int mode, int computeType);
using SetGroupCountFn = Status (*)(ConvDesc, int groups);
using SetMathTypeFn = Status (*)(ConvDesc, int mathType);
using DestroyConvDescFn = Status (*)(ConvDesc);
using FindFwdFn = Status (*)(Handle, TensorDesc, const void* x, FilterDesc, const void* w, ConvDesc,
                             TensorDesc, void* y, int requested, int* returned, AlgoPerf*,
                             void* workspace, size_t workspaceBytes);
using FindBwdDataFn = Status (*)(Handle, FilterDesc, const void* w, TensorDesc, const void* dy,
                                 ConvDesc, TensorDesc, void* dx, int requested, int* returned,
                                 AlgoPerf*, void* workspace, size_t workspaceBytes);
using FindBwdFilterFn = Status (*)(Handle, TensorDesc, const void* x, TensorDesc, const void* dy,
                                   ConvDesc, FilterDesc, void* dw, int requested, int* returned,
                                   AlgoPerf*, void* workspace, size_t workspaceBytes);
using FwdFn = Status (*)(Handle, const void* alpha, TensorDesc, const void* x, FilterDesc,
                         const void* w, ConvDesc, int algo, void* workspace, size_t workspaceBytes,
                         const void* beta, TensorDesc, void* y);
using BwdDataFn = Status (*)(Handle, const void* alpha, FilterDesc, const void* w, TensorDesc,
                             const void* dy, ConvDesc, int algo, void* workspace,
                             size_t workspaceBytes, const void* beta, TensorDesc, void* dx);
using BwdFilterFn = Status (*)(Handle, const void* alpha, TensorDesc, const void* x, TensorDesc,
                               const void* dy, ConvDesc, int algo, void* workspace,
                               size_t workspaceBytes, const void* beta, FilterDesc, void* dw);

// Every entry point the benchmark needs; the loader fills all of them or none.
struct Api {
  GetVersionFn GetVersion;
  GetErrorStringFn GetErrorString;
  CreateFn Create;
  DestroyFn Destroy;
  SetStreamFn SetStream;
  CreateTensorDescFn CreateTensorDescriptor;
  SetTensor4dFn SetTensor4dDescriptor;
  DestroyTensorDescFn DestroyTensorDescriptor;
  CreateFilterDescFn CreateFilterDescriptor;
  SetFilter4dFn SetFilter4dDescriptor;
  DestroyFilterDescFn DestroyFilterDescriptor;
  CreateConvDescFn CreateConvolutionDescriptor;
  SetConv2dFn SetConvolution2dDescriptor;
  SetGroupCountFn SetConvolutionGroupCount;
  SetMathTypeFn SetConvolutionMathType;
  DestroyConvDescFn DestroyConvolutionDescriptor;
  FindFwdFn FindConvolutionForwardAlgorithmEx;
  FindBwdDataFn FindConvolutionBackwardDataAlgorithmEx;
  FindBwdFilterFn FindConvolutionBackwardFilterAlgorithmEx;
  FwdFn ConvolutionForward;
  BwdDataFn ConvolutionBackwardData;
  BwdFilterFn ConvolutionBackwardFilter;
};

}  // namespace cn::cudnn
