// How a chunk's bytes are stored in a pack. The codec byte is part of the format (Format.md);
// decoding is always bounded by the chunk's recorded raw length. Which codec a chunk gets is
// decided in CodecPolicy.swift; each codec lives in its own file.

import Foundation

/// How a chunk's bytes are stored in a pack record: the codec byte of Format.md.
public enum ChunkCodec: UInt8, Sendable {
    /// The raw bytes.
    case raw = 0
    /// One zstd frame.
    case zstd = 1
    /// Float elements split into byte planes (exponents apart), each plane zstd or raw.
    case planes = 2
    /// Float elements as differences against base chunks the record names (DeltaCodec.swift).
    case delta = 3

    /// Largest raw chunk any reader accepts; bounds allocation for hostile input (packs and
    /// delta records alike, so it lives with the codecs rather than the pack format).
    public static let maxChunkLength: UInt32 = 64 * 1024 * 1024

    /// The codec's name in `show` and `--json` output.
    public var name: String {
        switch self {
        case .raw: return "raw"
        case .zstd: return "zstd"
        case .planes: return "planes"
        case .delta: return "delta"
        }
    }
}

/// A chunk as stored: its codec and the payload that codec decodes.
public struct EncodedChunk: Sendable {
    /// The codec the payload is in.
    public var codec: ChunkCodec
    /// The stored bytes.
    public var payload: [UInt8]

    /// A stored chunk from its parts.
    public init(codec: ChunkCodec, payload: [UInt8]) {
        self.codec = codec
        self.payload = payload
    }
}

/// Encoding and decoding of chunk payloads: `encode` (CodecPolicy.swift) picks a codec,
/// `decode` undoes any of them.
public enum ChunkEncoder {
    /// Decodes `payload` into exactly `rawLength` bytes, or throws naming `what`.
    public static func decode(codec: ChunkCodec, payload: UnsafeRawBufferPointer, rawLength: Int,
                              into out: UnsafeMutableRawBufferPointer, what: String) throws {
        precondition(out.count >= rawLength)
        switch codec {
        case .raw:
            guard payload.count == rawLength else {
                throw SLMError.damaged(path: what, problem: "raw chunk holds \(payload.count) bytes, expected \(rawLength)")
            }
            out.baseAddress!.copyMemory(from: payload.baseAddress!, byteCount: rawLength)
        case .zstd:
            try ZstdCodec.decode(payload, rawLength: rawLength, into: out, what: what)
        case .planes:
            try PlaneCodec.decode(payload, rawLength: rawLength, into: out, what: what)
        case .delta:
            // Needs its base bytes: ChunkVerifier.decodeRecord reads them through a BaseReader.
            throw SLMError.damaged(path: what, problem: "delta record read without access to its base chunks")
        }
    }

}
