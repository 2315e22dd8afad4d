// FastCDC 2020 (Xia et al.), cut-point compatible with the canonical implementation
// (the Rust crate fastcdc, v2020): gear hash, normalized chunking with two masks,
// hashing skipped below the minimum size, two bytes per loop step.

/// FastCDC's parameters, as a store's config records them (every writer of a store cuts alike).
public struct ChunkerParameters: Equatable, Sendable {
    /// No cut before this many bytes.
    public var minSize: Int
    /// The chunk size the masks aim at.
    public var avgSize: Int
    /// A cut at this many bytes at the latest.
    public var maxSize: Int
    /// FastCDC's normalization level (0 to 3): how strongly sizes gather around the average.
    public var normalization: Int

    /// 16 KiB minimum, 64 KiB average, 256 KiB maximum, normalization 1.
    public static let `default` = ChunkerParameters(minSize: 16 * 1024, avgSize: 64 * 1024, maxSize: 256 * 1024, normalization: 1)

    /// Parameters as given (check them with `validate()`).
    public init(minSize: Int, avgSize: Int, maxSize: Int, normalization: Int) {
        self.minSize = minSize
        self.avgSize = avgSize
        self.maxSize = maxSize
        self.normalization = normalization
    }

    /// The ranges the canonical implementation accepts, so a store never records parameters
    /// another FastCDC reader could not reproduce.
    public func validate() throws {
        guard (64...67_108_864).contains(minSize), (256...268_435_456).contains(avgSize),
              (1024...1_073_741_824).contains(maxSize), minSize <= avgSize, avgSize <= maxSize,
              (0...3).contains(normalization) else {
            throw SLMError.argument("invalid chunker parameters min=\(minSize) avg=\(avgSize) max=\(maxSize) level=\(normalization): need 64 <= min <= avg <= max, avg in 256...256Mi, level 0...3")
        }
        let bits = FastCDC.maskBits(avgSize)
        guard (5 + normalization...25 - normalization).contains(bits) else {
            throw SLMError.argument("average chunk size \(avgSize) with normalization \(normalization) is outside the mask table")
        }
    }
}

/// A FastCDC 2020 chunker for one set of parameters; it finds cut points, reproducing the canonical
/// implementation's.
public struct FastCDC: Sendable {
    /// The parameters it cuts with.
    public let parameters: ChunkerParameters
    let maskS: UInt64
    let maskL: UInt64
    let maskSLS: UInt64
    let maskLLS: UInt64

    /// Masks from the FastCDC paper's table, indexed by the number of one bits (5...25).
    static let masks: [UInt64] = [
        0, 0, 0, 0, 0,
        0x0000_0000_0180_4110, 0x0000_0000_0180_3110, 0x0000_0000_1803_5100, 0x0000_0018_0003_5300,
        0x0000_0190_0035_3000, 0x0000_5900_0353_0000, 0x0000_d900_0353_0000, 0x0000_d901_0353_0000,
        0x0000_d903_0353_0000, 0x0000_d903_1353_0000, 0x0000_d90f_0353_0000, 0x0000_d903_0353_7000,
        0x0000_d907_0353_7000, 0x0000_d907_0753_7000, 0x0000_d917_0753_7000, 0x0000_d917_4753_7000,
        0x0000_d917_6753_7000, 0x0000_d937_6753_7000, 0x0000_d937_7753_7000, 0x0000_d937_7757_7000,
        0x0000_db37_7757_7000,
    ]

    static func maskBits(_ avg: Int) -> Int { Int(Double(avg).log2Rounded) }

    /// A chunker for `p` (assumed valid).
    public init(_ p: ChunkerParameters) {
        parameters = p
        let bits = FastCDC.maskBits(p.avgSize)
        maskS = FastCDC.masks[bits + p.normalization]
        maskL = FastCDC.masks[bits - p.normalization]
        maskSLS = maskS << 1
        maskLLS = maskL << 1
    }

    /// Length of the next chunk of `data` (which starts at a chunk boundary). `data` must hold
    /// at least `maxSize` bytes unless it is the end of the segment being chunked.
    @inline(__always)
    public func cut(_ data: UnsafeRawBufferPointer) -> Int {
        let gear = GearTable.gear
        let gearLS = GearTable.gearShifted
        var remaining = data.count
        let minSize = parameters.minSize
        if remaining <= minSize { return remaining }
        var center = parameters.avgSize
        if remaining > parameters.maxSize {
            remaining = parameters.maxSize
        } else if remaining < center {
            center = remaining
        }
        let src = data.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var index = minSize / 2
        var hash: UInt64 = 0
        return gear.withUnsafeBufferPointer { g in
            gearLS.withUnsafeBufferPointer { gls in
                while index < center / 2 {
                    let a = index * 2
                    hash = (hash << 2) &+ gls[Int(src[a])]
                    if hash & maskSLS == 0 { return a }
                    hash = hash &+ g[Int(src[a + 1])]
                    if hash & maskS == 0 { return a + 1 }
                    index += 1
                }
                while index < remaining / 2 {
                    let a = index * 2
                    hash = (hash << 2) &+ gls[Int(src[a])]
                    if hash & maskLLS == 0 { return a }
                    hash = hash &+ g[Int(src[a + 1])]
                    if hash & maskL == 0 { return a + 1 }
                    index += 1
                }
                return remaining
            }
        }
    }

    /// All chunk lengths of an in-memory buffer (tests and small inputs).
    public func chunkLengths(_ bytes: [UInt8]) -> [Int] {
        var out: [Int] = []
        bytes.withUnsafeBytes { buf in
            var offset = 0
            while offset < buf.count {
                let n = cut(UnsafeRawBufferPointer(rebasing: buf[offset...]))
                out.append(n)
                offset += n
            }
        }
        return out
    }
}

extension Double {
    fileprivate var log2Rounded: Double {
        #if canImport(Glibc)
        return Glibc.round(Glibc.log2(self))
        #else
        return Darwin.round(Darwin.log2(self))
        #endif
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
