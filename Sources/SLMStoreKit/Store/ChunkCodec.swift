// How a chunk's bytes are stored in a pack. The codec byte is part of the format (Format.md);
// decoding is always bounded by the chunk's recorded raw length.

import CZstd
import Foundation

public enum ChunkCodec: UInt8, Sendable {
    case raw = 0
    case zstd = 1

    public var name: String {
        switch self {
        case .raw: return "raw"
        case .zstd: return "zstd"
        }
    }
}

/// Reusable zstd contexts, one checked out per concurrent worker: creating a context per chunk
/// would cost more than compressing a 64 KiB chunk.
final class ZstdContextPool: @unchecked Sendable {
    private let lock = NSLock()
    private var compressors: [OpaquePointer] = []
    private var decompressors: [OpaquePointer] = []

    static let shared = ZstdContextPool()

    func withCompressor<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        lock.lock()
        let ctx = compressors.popLast() ?? ZSTD_createCCtx()!
        lock.unlock()
        defer { lock.lock(); compressors.append(ctx); lock.unlock() }
        return try body(ctx)
    }

    func withDecompressor<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        lock.lock()
        let ctx = decompressors.popLast() ?? ZSTD_createDCtx()!
        lock.unlock()
        defer { lock.lock(); decompressors.append(ctx); lock.unlock() }
        return try body(ctx)
    }
}

public struct EncodedChunk: Sendable {
    public var codec: ChunkCodec
    public var payload: [UInt8]
}

public enum ChunkEncoder {
    /// A chunk is kept raw unless compression saves at least this share.
    static let minimumSaving = 0.03

    public static func encode(_ raw: UnsafeRawBufferPointer, level: Int32) -> EncodedChunk {
        let bound = ZSTD_compressBound(raw.count)
        var out = [UInt8](repeating: 0, count: bound)
        let n = ZstdContextPool.shared.withCompressor { ctx in
            out.withUnsafeMutableBytes { dst in
                ZSTD_compressCCtx(ctx, dst.baseAddress, bound, raw.baseAddress, raw.count, level)
            }
        }
        if ZSTD_isError(n) == 0, Double(n) <= Double(raw.count) * (1 - minimumSaving) {
            out.removeSubrange(n...)
            return EncodedChunk(codec: .zstd, payload: out)
        }
        return EncodedChunk(codec: .raw, payload: Array(raw))
    }

    /// Decodes `payload` into exactly `rawLength` bytes, or throws naming `what`.
    public static func decode(codec: ChunkCodec, payload: UnsafeRawBufferPointer, rawLength: Int,
                              into out: UnsafeMutableRawBufferPointer, what: String) throws {
        precondition(out.count >= rawLength)
        switch codec {
        case .raw:
            guard payload.count == rawLength else {
                throw SLMError.corrupt(path: what, problem: "raw chunk holds \(payload.count) bytes, expected \(rawLength)")
            }
            out.baseAddress!.copyMemory(from: payload.baseAddress!, byteCount: rawLength)
        case .zstd:
            let declared = ZSTD_getFrameContentSize(payload.baseAddress, payload.count)
            guard declared == UInt64(rawLength) else {
                throw SLMError.corrupt(path: what, problem: "zstd frame declares \(declared) bytes, expected \(rawLength)")
            }
            let n = ZstdContextPool.shared.withDecompressor { ctx in
                ZSTD_decompressDCtx(ctx, out.baseAddress, rawLength, payload.baseAddress, payload.count)
            }
            guard ZSTD_isError(n) == 0 else {
                throw SLMError.corrupt(path: what, problem: "zstd: \(String(cString: ZSTD_getErrorName(n)))")
            }
            guard n == rawLength else {
                throw SLMError.corrupt(path: what, problem: "zstd frame decoded to \(n) bytes, expected \(rawLength)")
            }
        }
    }
}
