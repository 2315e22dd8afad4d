// A remote as a place versions are published into (Store/Publish.swift), through its backend.

import SLMFormats
import SLMLocalStore
import Foundation

/// A remote reached through its backend; refs are created with a compare-and-swap, so two
/// publishers racing on one version cannot both win.
struct RemoteVersionDestination: VersionDestination {
    let backend: StoreBackend
    var label: String { backend.location }

    func putObject(_ bytes: [UInt8]) throws {
        let path = RemoteLayout.objectPath(SHA256Hasher.hash(bytes))
        if try backend.exists(path) { return }
        try backend.write(path, bytes: bytes)
    }

    func putObject(file: FileDescriptor, id: SHA256Digest) throws {
        let path = RemoteLayout.objectPath(id)
        if try backend.exists(path) { return }
        try backend.upload(path, fromFile: file.path)
    }

    func createVersionRef(_ name: ModelName, _ version: SemVer, id: SHA256Digest) throws -> SHA256Digest? {
        let path = RemoteLayout.versionRefPath(name, version)
        if try backend.write(path, bytes: Array((id.hex + "\n").utf8), ifMatching: nil) { return nil }
        guard let existing = try backend.readRef(path) else {
            throw SLMError.remote(url: "\(backend.location)/\(path)", problem: "ref exists but cannot be read")
        }
        return existing
    }
}

