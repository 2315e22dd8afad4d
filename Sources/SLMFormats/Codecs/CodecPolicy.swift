// The one place that decides how a chunk is stored: which chunks are float data (from the
// tensor they lie in), and which codec wins for a given chunk.

import Foundation

/// Which chunks are float data, and so which codecs a chunk may get.
public enum CodecPolicy {
    /// The layout for a tensor dtype, or nil when planes do not apply.
    public static func floatLayout(dtype: String, phase: Int) -> FloatLayout? {
        switch dtype {
        case "BF16": return FloatLayout(elementSize: 2, transform: .exponentSplit, phase: phase % 2)
        case "F32": return FloatLayout(elementSize: 4, transform: .exponentSplit, phase: phase % 4)
        case "F16": return FloatLayout(elementSize: 2, transform: .byteSplit, phase: phase % 2)
        default: return nil
        }
    }

    /// The layout of the chunk `range` (file offsets) when it lies wholly inside one float tensor
    /// of `tensors` (sorted by start); `cursor` remembers the scan position across calls.
    package static func floatLayout(for range: Range<UInt64>, in tensors: [(range: Range<UInt64>, dtype: String)], cursor: inout Int) -> FloatLayout? {
        while cursor < tensors.count && tensors[cursor].range.upperBound <= range.lowerBound { cursor += 1 }
        guard cursor < tensors.count else { return nil }
        let t = tensors[cursor]
        guard t.range.lowerBound <= range.lowerBound, range.upperBound <= t.range.upperBound else { return nil }
        return floatLayout(dtype: t.dtype, phase: Int((range.lowerBound - t.range.lowerBound) % 4))
    }
}

extension ChunkEncoder {
    /// A chunk is kept raw unless compression saves at least this share.
    static let minimumSaving = 0.03

    /// A float chunk (`layout` given) as planes, any other as zstd at `level`; raw instead when
    /// that saves less than 3%.
    public static func encode(_ raw: UnsafeRawBufferPointer, level: Int32, layout: FloatLayout? = nil) -> EncodedChunk {
        if let layout, raw.count >= 4 * layout.elementSize {
            let planes = PlaneCodec.encode(raw, layout: layout)
            if Double(planes.count) <= Double(raw.count) * (1 - minimumSaving) {
                return EncodedChunk(codec: .planes, payload: planes)
            }
            return EncodedChunk(codec: .raw, payload: Array(raw))
        }
        if let out = ZstdCodec.encode(raw, level: level), Double(out.count) <= Double(raw.count) * (1 - minimumSaving) {
            return EncodedChunk(codec: .zstd, payload: out)
        }
        return EncodedChunk(codec: .raw, payload: Array(raw))
    }
}
