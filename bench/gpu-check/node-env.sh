# Sourced by run-on-gpu.sh and run-bench-on-gpu.sh: picks the node binary and records the GPU.
#   NODE: .device/node.xz unpacked (from scripts/pack-node.sh), else the node on the PATH (20+).
#   nvidia-smi's name, driver and memory go to $1/nvidia-smi.csv; CONVNET_GPU_DRIVER is exported.
gpu_env() {
  local out=$1
  if [ -s .device/node.xz ]; then
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/convnet-node-XXXXXX")
    xz -dc .device/node.xz > "$dir/node" && chmod +x "$dir/node" || { echo "cannot unpack .device/node.xz" >&2; return 1; }
    NODE="$dir/node"
  elif command -v node >/dev/null; then
    NODE=$(command -v node)
  else
    echo "no node: install Node.js 20 or later, or run scripts/pack-node.sh on a machine that has it and bring .device/ along" >&2
    return 1
  fi
  local major
  major=$("$NODE" -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || { echo "node $("$NODE" --version) is too old: Node.js 20 or later is needed" >&2; return 1; }
  export PATH="$(dirname "$NODE"):$PATH:/usr/local/cuda/bin"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/nvidia-smi.csv"
    CONVNET_GPU_DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)
    export CONVNET_GPU_DRIVER
  else
    echo "nvidia-smi not found: no NVIDIA driver on this machine?" | tee "$out/nvidia-smi.csv"
  fi
}
