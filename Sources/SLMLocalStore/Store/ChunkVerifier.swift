// Decoding a chunk record and checking it against its id: the one gate every chunk passes,
// read from this store's packs or received from a remote.

import SLMFormats

/// Supplies the base bytes a delta record names: `n` bytes starting `offset` bytes into the
/// concatenation of `bases`, read only from full (non-delta) records, so depth stays 1.
public typealias BaseReader = (_ bases: [ChunkRef], _ offset: UInt32, _ count: Int, _ what: String) throws -> [UInt8]

/// Decoding and verification of a chunk record, shared by local reads and remote fetches.
public enum ChunkVerifier {
    /// Decodes a whole record (header and payload) into `out` and checks it: the header against the
    /// index entry `loc`, the decoded bytes against `id`. A delta record reads its bases through
    /// `base`. `what` names the record's source in errors.
    public static func decodeRecord(_ record: [UInt8], expected id: ChunkID, location loc: ChunkLocation,
                                    into out: UnsafeMutableRawBufferPointer, what: String, base: BaseReader? = nil) throws {
        let header = try PackFormat.parseRecordHeader(record, source: what)
        guard header.id == id, header.codec == loc.codec, header.rawLength == loc.rawLength,
              header.storedLength == loc.storedLength else {
            throw SLMError.damaged(path: what, problem: "record header does not match the pack index")
        }
        guard record.count == PackFormat.recordHeaderSize + Int(loc.storedLength) else {
            throw SLMError.damaged(path: what, problem: "record has \(record.count) bytes, expected \(PackFormat.recordHeaderSize + Int(loc.storedLength))")
        }
        let n = Int(loc.rawLength)
        try record.withUnsafeBytes { buf in
            let payload = UnsafeRawBufferPointer(rebasing: buf[PackFormat.recordHeaderSize...])
            if loc.codec == .delta {
                let h = try DeltaCodec.header(payload, rawLength: n, what: what)
                guard let base else { throw SLMError.damaged(path: what, problem: "delta record read without access to its base chunks") }
                let bytes = try base(h.bases, h.baseOffset, n, what)
                try bytes.withUnsafeBytes { try DeltaCodec.decode(payload, header: h, base: $0, rawLength: n, into: out, what: what) }
            } else {
                try ChunkEncoder.decode(codec: loc.codec, payload: payload, rawLength: n, into: out, what: what)
            }
        }
        let got = ChunkID(of: UnsafeRawBufferPointer(rebasing: out[0..<n]))
        guard got == id else { throw SLMError.damaged(path: what, problem: "content hashes to \(got.hex), not \(id.hex)") }
    }

    /// The header of a delta record (its bases), checked, without decoding it.
    public static func deltaHeader(_ record: [UInt8], rawLength: UInt32, what: String) throws -> DeltaHeader {
        guard record.count >= PackFormat.recordHeaderSize else { throw SLMError.damaged(path: what, problem: "short chunk record") }
        return try record.withUnsafeBytes {
            try DeltaCodec.header(UnsafeRawBufferPointer(rebasing: $0[PackFormat.recordHeaderSize...]), rawLength: Int(rawLength), what: what)
        }
    }
}
