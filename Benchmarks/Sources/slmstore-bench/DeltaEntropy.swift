// The bound a delta coder is measured against: the order-0 entropy of each byte plane of the
// tensor differences between two safetensors files, with a table per tensor and plane.

import Foundation
import SLMStoreKit
import SLMFormats

/// Order-0 bounds, in bytes, for coding `new` given `base`. `delta` is the transform slmstore's
/// delta codec applies (difference of the order-preserving integer forms, zigzagged, split into
/// byte planes); `xor` is ZipLLM's (the two values XORed, split into byte planes). Tensors of
/// one name, dtype and size in both files are paired; any other tensor counts at the entropy of
/// its own bytes, and an unchanged tensor counts 0.
func deltaEntropy(base basePath: String, new newPath: String) throws -> [String: Any] {
    let baseHeader = try SafetensorsHeader.read(path: basePath), newHeader = try SafetensorsHeader.read(path: newPath)
    let baseFile = try FileDescriptor.openForReading(basePath), newFile = try FileDescriptor.openForReading(newPath)
    let byName = Dictionary(baseHeader.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    var deltaBits = 0.0, xorBits = 0.0, paired = 0, changed = 0
    func bits(_ histogram: [Int]) -> Double {
        let n = Double(histogram.reduce(0, +))
        return histogram.reduce(0.0) { $1 == 0 ? $0 : $0 - Double($1) * log2(Double($1) / n) }
    }
    for t in newHeader.tensors {
        let width = ["BF16": 2, "F16": 2, "F32": 4][t.dtype]
        guard let b = byName[t.name], b.dtype == t.dtype, b.byteCount == t.byteCount, let e = width, t.byteCount % UInt64(e) == 0 else {
            // Unpaired: its own bytes, one table.
            var h = [Int](repeating: 0, count: 256)
            try newFile.readBlocks(newHeader.dataStart + t.begin..<newHeader.dataStart + t.end, blockSize: 1 << 20) { for x in $0 { h[Int(x)] += 1 } }
            deltaBits += bits(h); xorBits += bits(h)
            continue
        }
        paired += 1
        var dh = [[Int]](repeating: [Int](repeating: 0, count: 256), count: e), xh = dh
        var any = false
        let block = 1 << 20
        var at: UInt64 = 0
        while at < t.byteCount {
            let n = Int(min(UInt64(block), t.byteCount - at))
            let nb = try newFile.pread(count: n, at: newHeader.dataStart + t.begin + at)
            let bb = try baseFile.pread(count: n, at: baseHeader.dataStart + b.begin + at)
            // The codec's own transform (DeltaCodec), so the bound follows it if it changes.
            nb.withUnsafeBytes { np in bb.withUnsafeBytes { bp in
                for i in 0..<(n / e) {
                    let (z, x): (UInt32, UInt32)
                    if e == 2 {
                        let v = np.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self), w = bp.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)
                        (z, x) = (UInt32(DeltaCodec.zigzag16(DeltaCodec.ordered16(v) &- DeltaCodec.ordered16(w))), UInt32(v ^ w))
                    } else {
                        let v = np.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self), w = bp.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)
                        (z, x) = (DeltaCodec.zigzag32(DeltaCodec.ordered32(v) &- DeltaCodec.ordered32(w)), v ^ w)
                    }
                    if x != 0 { any = true }
                    for j in 0..<e {
                        let shift = UInt32(8 * (e - 1 - j))
                        dh[j][Int((z >> shift) & 0xff)] += 1
                        xh[j][Int((x >> shift) & 0xff)] += 1
                    }
                }
            } }
            at += UInt64(n)
        }
        guard any else { continue }
        changed += 1
        deltaBits += dh.reduce(0) { $0 + bits($1) }
        xorBits += xh.reduce(0) { $0 + bits($1) }
    }
    let size = try newFile.size()
    return ["size": size, "delta_bound_bytes": Int(deltaBits / 8), "xor_bound_bytes": Int(xorBits / 8),
            "paired_tensors": paired, "changed_tensors": changed]
}
