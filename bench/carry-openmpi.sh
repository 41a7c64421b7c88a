#!/usr/bin/env bash
# Copies Debian's Open MPI runtime (mpirun, orted, its plugins, PMIx and their libraries) into
# .device/ompi, relocatable through OPAL_PREFIX, for a GPU machine that has no Open MPI. Run after
# ../shared/device/prepare.sh (which empties .device/); on the GPU machine, after
# `source .device/remote.sh`, `source .device/ompi/env.sh` puts mpirun on the PATH.
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
root=$(git rev-parse --show-toplevel)
dst=$root/.device/ompi
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
rm -rf "$dst" && mkdir -p "$dst/bin" "$dst/lib/$arch" "$dst/share"
cp -L /usr/bin/orterun /usr/bin/orted "$dst/bin/"
ln -s orterun "$dst/bin/mpirun"
cp -a "/usr/lib/$arch/openmpi" "$dst/lib/$arch/"
cp -a "/usr/lib/$arch/pmix2" "$dst/lib/$arch/"
rm -rf "$dst/lib/$arch/openmpi/include" "$dst/lib/$arch/pmix2/include"
cp -a /usr/share/openmpi "$dst/share/"
[ -d /usr/share/pmix ] && cp -a /usr/share/pmix "$dst/share/"
# Every library the launcher and the plugins load, beside the ones prepare.sh copied.
find "$dst" -type f \( -name '*.so*' -o -path '*/bin/*' \) | while read -r f; do
  ldd "$f" 2>/dev/null | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | ld-linux* | libresolv.so* | libstdc++.so* | libgcc_s.so*) ;;
    *) cp -n "$lib" "$root/.device/lib/" ;;
  esac
done
cat > "$dst/env.sh" <<ENV
# Sourced on the GPU machine after .device/remote.sh.
_o=\$(cd "\$(dirname "\${BASH_SOURCE[0]}")" && pwd)
export OPAL_PREFIX=\$_o PATH=\$_o/bin:\$PATH
export LD_LIBRARY_PATH=\$_o/lib/$arch/openmpi/lib:\$_o/lib/$arch/pmix2/lib:\$LD_LIBRARY_PATH
export PMIX_MCA_mca_base_component_path=\$_o/lib/$arch/pmix2/lib/pmix
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export PMIX_MCA_pcompress_base_silence_warning=1
unset _o
ENV
du -sh "$dst"
