#!/usr/bin/env bash
# Runs the reproductions of the "hostile and careless input" issue against a built `vgg`
# and prints, for each: exit code, peak RSS (GNU time's %M), seconds, and the first line of
# stderr. Usage: scripts/hostile_repro.sh [path/to/vgg]   (default: target/release/vgg)
set -u
VGG=$(realpath "${1:-target/release/vgg}")
FIX=$(realpath tests/fixtures)
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
cd "$DIR"
export FIX

python3 - <<'EOF'
import struct
def npy(path, shape, data=b"", descr="<f4"):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (descr, tuple(shape))
    header = header.encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    open(path, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data)
npy("overflow.npy", (2**62, 3, 32, 32), b"\0" * 12288)
npy("wide.npy", (1, 3, 2**32, 2**32), b"\0" * 12288)
npy("claims.npy", (100000, 3, 224, 224), b"\0" * 12288)
npy("big_endian.npy", (1, 3, 32, 32), b"\0" * 12288, ">f4")
npy("bool.npy", (1, 3, 32, 32), b"\0" * 3072, "|b1")
npy("ok.npy", (1, 3, 32, 32), b"\0" * 12288)
npy("nan.npy", (1, 3, 32, 32), struct.pack("<f", float("nan")) * 3072)
# A JPEG whose frame header claims 65500x65500 pixels.
import os
jpeg = bytearray(open(os.environ["FIX"] + "/images/landscape.jpg", "rb").read())
sof = next(i for i in range(len(jpeg) - 1) if jpeg[i] == 0xFF and jpeg[i + 1] in (0xC0, 0xC2))
jpeg[sof + 5:sof + 9] = struct.pack(">HH", 65500, 65500)
open("bomb.jpg", "wb").write(jpeg)
EOF
mkfifo fifo.pth fifo.npy
mkdir -p empty loopdir && ln -s . loopdir/a && mkfifo loopdir/zz.jpg

run() {
    /usr/bin/time -f "%x %M %e" -o time.txt timeout 20 "$VGG" "$@" >out.txt 2>err.txt
    # The last line is "%x %M %e"; a line before it names a killing signal, if any.
    read -r rc rss secs < <(tail -1 time.txt)
    grep -q 'terminated by signal' time.txt && rc="sig$(grep -o '[0-9]*$' <(head -1 time.txt))"
    printf '%-4s %7s KiB %5ss  vgg %s\n      %s\n' "$rc" "$rss" "$secs" "$*" \
        "$(head -c 220 err.txt | head -1)"
}
for f in overflow wide claims big_endian bool nan; do
    run forward --arch vgg11 --input $f.npy --output o.npy
    run forward --arch vgg11 --input $f.npy --output o.npy --engine reference
done
run bench --arch vgg11 --input 1x3x4294967296x4294967296
run bench --arch vgg11 --input 1x3x100000x100000
run forward --arch vgg11 --input ok.npy --output o.npy --pool 100000
run classify --arch vgg11 --resize 100000 --crop 100000 "$FIX/images/landscape.jpg"
run bench --arch vgg11 --train --input 100000x3x32x32
run weights "$FIX/pth/shared_views_bomb_zip.pth"
run summary vgg16 --input 3x4294967296x4294967296
run summary vgg16 --input 3x32x32 --batch-size 18446744073709551615
run summary vgg16 --input 3x32x32 --pool 10000000
run weights fifo.pth
run forward --arch vgg11 --input fifo.npy --output o.npy
run classify --weights "$FIX/forward/tiny_bn.pth" loopdir
run --threads 100000 summary vgg11 --input 3x32x32
run classify --weights "$FIX/forward/tiny_bn.pth" bomb.jpg
run weights "$FIX/forward/tiny_bn.pth" --arch vgg16
run forward --arch vgg11 --input ok.npy --output nodir/x.npy
run features --weights "$FIX/forward/tiny_bn.pth" --layer features.3 empty --output f.npy
run classify --weights "$FIX/forward/tiny_bn.pth" empty
run forward --arch vgg11 --input ok.npy --output /dev/null
