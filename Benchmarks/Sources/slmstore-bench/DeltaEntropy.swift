// The bound a delta coder is measured against: the order-0 entropy of each byte plane of the
// tensor differences between two safetensors files, with a table per tensor and plane.

import Foundation
import SLMStoreKit

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
            nb.withUnsafeBytes { np in bb.withUnsafeBytes { bp in
                if e == 2 {
                    for i in 0..<(n / 2) {
                        let v = np.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self), w = bp.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)
                        if v != w { any = true }
                        let o = { (x: UInt16) -> UInt16 in x & 0x8000 != 0 ? ~x : x | 0x8000 }
                        let d = o(v) &- o(w)
                        let z = (d << 1) ^ UInt16(bitPattern: Int16(bitPattern: d) >> 15)
                        dh[0][Int(z >> 8)] += 1; dh[1][Int(z & 0xff)] += 1
                        let x = v ^ w
                        xh[0][Int(x >> 8)] += 1; xh[1][Int(x & 0xff)] += 1
                    }
                } else {
                    for i in 0..<(n / 4) {
                        let v = np.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self), w = bp.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)
                        if v != w { any = true }
                        let o = { (x: UInt32) -> UInt32 in x & 0x8000_0000 != 0 ? ~x : x | 0x8000_0000 }
                        let d = o(v) &- o(w)
                        let z = (d << 1) ^ UInt32(bitPattern: Int32(bitPattern: d) >> 31)
                        let x = v ^ w
                        for j in 0..<4 {
                            dh[j][Int((z >> (8 * UInt32(3 - j))) & 0xff)] += 1
                            xh[j][Int((x >> (8 * UInt32(3 - j))) & 0xff)] += 1
                        }
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
    let size = try FileDescriptor.openForReading(newPath).size()
    return ["size": size, "delta_bound_bytes": Int(deltaBits / 8), "xor_bound_bytes": Int(xorBits / 8),
            "paired_tensors": paired, "changed_tensors": changed]
}
