// Where content-defined chunking restarts inside a file. For safetensors the header is one
// segment and every tensor of at least the minimum chunk size starts a new one (runs of smaller
// tensors share a segment), so a changed tensor can only change its own chunks and every large
// tensor is covered by whole chunks (which lets `diff` compare tensors by chunk ids alone).
// GGUF pads tensors to its alignment: the padding after a large tensor is a segment of its own,
// so the tensor's last chunk lies wholly inside it (and gets the float codecs).

/// Where chunking restarts inside a weights file.
public enum Segmenter {
    /// Sorted start offsets of the segments of a file; the first is always 0.
    public static func boundaries(fileSize: UInt64, safetensors: SafetensorsHeader?, minSize: Int) -> [UInt64] {
        guard let st = safetensors else { return [0] }
        var out: [UInt64] = [0]
        let dataStart = st.dataStart
        guard dataStart < fileSize else { return out }
        out.append(dataStart)
        var segmentStart = dataStart
        for (i, t) in st.tensors.enumerated() {
            let begin = dataStart + t.begin
            let large = t.byteCount >= UInt64(minSize)
            if begin > segmentStart, large || begin - segmentStart >= UInt64(minSize), begin < fileSize {
                out.append(begin)
                segmentStart = begin
            }
            let end = dataStart + t.end
            let next = i + 1 < st.tensors.count ? dataStart + st.tensors[i + 1].begin : fileSize
            if st.format == .gguf, large, end > segmentStart, end < next, end < fileSize {
                out.append(end)
                segmentStart = end
            }
        }
        return out
    }
}
