// Where content-defined chunking restarts inside a file. For safetensors the header is one
// segment and each tensor starts a new one (runs of tensors smaller than the minimum chunk
// share a segment), so a changed tensor can only change its own chunks.

public enum Segmenter {
    /// Sorted start offsets of the segments of a file; the first is always 0.
    public static func boundaries(fileSize: UInt64, safetensors: SafetensorsHeader?, minSize: Int) -> [UInt64] {
        guard let st = safetensors else { return [0] }
        var out: [UInt64] = [0]
        let dataStart = st.dataStart
        guard dataStart < fileSize else { return out }
        out.append(dataStart)
        var segmentStart = dataStart
        for t in st.tensors {
            let begin = dataStart + t.begin
            if begin - segmentStart >= UInt64(minSize), begin < fileSize {
                out.append(begin)
                segmentStart = begin
            }
        }
        return out
    }
}
