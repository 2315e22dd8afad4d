// Decoding a chunk record and checking it against its id: the one gate every chunk passes,
// read from this store's packs or received from a remote.

/// Decoding and verification of a chunk record, shared by local reads and remote fetches.
public enum ChunkVerifier {
    public static func decodeRecord(_ record: [UInt8], expected id: ChunkID, location loc: ChunkLocation,
                                    into out: UnsafeMutableRawBufferPointer, what: String) throws {
        let header = try PackFormat.parseRecordHeader(record, source: what)
        guard header.id == id, header.codec == loc.codec, header.rawLength == loc.rawLength,
              header.storedLength == loc.storedLength else {
            throw SLMError.damaged(path: what, problem: "record header does not match the pack index")
        }
        guard record.count == PackFormat.recordHeaderSize + Int(loc.storedLength) else {
            throw SLMError.damaged(path: what, problem: "record has \(record.count) bytes, expected \(PackFormat.recordHeaderSize + Int(loc.storedLength))")
        }
        try record.withUnsafeBytes { buf in
            let payload = UnsafeRawBufferPointer(rebasing: buf[PackFormat.recordHeaderSize...])
            try ChunkEncoder.decode(codec: loc.codec, payload: payload, rawLength: Int(loc.rawLength), into: out, what: what)
        }
        let got = ChunkID(of: UnsafeRawBufferPointer(rebasing: out[0..<Int(loc.rawLength)]))
        guard got == id else { throw SLMError.damaged(path: what, problem: "content hashes to \(got.hex), not \(id.hex)") }
    }
}
