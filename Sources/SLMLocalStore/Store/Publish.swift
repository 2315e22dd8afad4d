// How a version becomes visible, wherever it is written (this store by add and pull, a remote
// by push through Transport/RemoteDestination.swift): its objects first, then its version ref,
// created once. The immutability rule lives here and nowhere else.

import SLMFormats
import Foundation

/// A version ready to publish: its id and the exact object bytes that hash to the ids it names.
public struct VersionRecord: Sendable {
    /// The model.
    public var name: ModelName
    /// The version.
    public var version: SemVer
    /// The version id.
    public var id: SHA256Digest
    /// The version object's exact bytes (they hash to `id`).
    public var versionObject: [UInt8]
    /// The tree object's exact bytes (empty when `treeFile` holds them).
    public var treeObject: [UInt8]
    /// Where the tree object is held instead of `treeObject`, when it is too large to hold, with
    /// the id the version object names (a destination checks the bytes against it as it copies).
    package var treeFile: (file: FileDescriptor, id: SHA256Digest)? = nil

    /// A version to publish from its name, id and exact object bytes.
    package init(name: ModelName, version: SemVer, id: SHA256Digest, versionObject: [UInt8], treeObject: [UInt8],
                 treeFile: (file: FileDescriptor, id: SHA256Digest)? = nil) {
        self.name = name
        self.version = version
        self.id = id
        self.versionObject = versionObject
        self.treeObject = treeObject
        self.treeFile = treeFile
    }

    /// NAME@VERSION, for messages.
    public var label: String { "\(name)@\(version)" }
}

/// A place versions are published into.
package protocol VersionDestination {
    /// For messages: the store root or remote location.
    var label: String { get }
    /// Stores an object under the id its bytes hash to; storing one twice is harmless.
    func putObject(_ bytes: [UInt8]) throws
    /// The same for an object held in a file, which must hash to `id`.
    func putObject(file: FileDescriptor, id: SHA256Digest) throws
    /// Creates the version ref when there is none, atomically; otherwise returns the id the
    /// existing ref names (and changes nothing).
    func createVersionRef(_ name: ModelName, _ version: SemVer, id: SHA256Digest) throws -> SHA256Digest?
}

/// The one rule for publishing versions, into any `VersionDestination`: objects first, then each ref created once.
package enum Publication {
    /// Writes every version's objects, then its ref. A version is immutable: once a ref names
    /// an id it never names another, so a ref that already names a different id is a conflict,
    /// and one naming the same id means the version is already published. Returns, per record,
    /// whether this call created its ref. Pass dependencies before the versions that need them.
    @discardableResult
    package static func publish(_ records: [VersionRecord], to destination: VersionDestination) throws -> [Bool] {
        for r in records {
            if let tree = r.treeFile {
                try destination.putObject(file: tree.file, id: tree.id)
            } else {
                try destination.putObject(r.treeObject)
            }
            try destination.putObject(r.versionObject)
        }
        CrashPoint.hit("publish-before-refs")
        var created: [Bool] = []
        for r in records {
            if let existing = try destination.createVersionRef(r.name, r.version, id: r.id) {
                guard existing == r.id else {
                    throw SLMError.conflict("\(destination.label) already has \(r.label) as version \(existing.hex.prefix(12)), not \(r.id.hex.prefix(12)); versions are immutable, publish a new version instead")
                }
                created.append(false)
            } else {
                created.append(true)
            }
        }
        return created
    }
}

/// The local store as a destination. Create refs only while holding the refs lock.
package struct LocalVersionDestination: VersionDestination {
    let store: Store
    /// The destination `store`.
    package init(store: Store) { self.store = store }
    /// The store's directory, for messages.
    package var label: String { store.root }

    /// Writes an object (left alone when present).
    package func putObject(_ bytes: [UInt8]) throws { try store.writeObject(bytes) }
    /// Copies an object from a file, checked against `id`.
    package func putObject(file: FileDescriptor, id: SHA256Digest) throws { try store.writeObject(file: file, id: id) }

    /// Creates the ref under the refs lock; returns the id an existing ref names instead.
    package func createVersionRef(_ name: ModelName, _ version: SemVer, id: SHA256Digest) throws -> SHA256Digest? {
        let path = store.versionRefPath(name, version)
        if let existing = try store.readRef(at: path) { return existing }
        try store.writeRef(at: path, id: id)
        return nil
    }
}

/// Paths inside a store directory, the same locally and on a remote (Format.md §1).
public enum RemoteLayout {
    /// objects/<first two hex digits>/<the rest>.
    public static func objectPath(_ id: SHA256Digest) -> String {
        let hex = id.hex
        return "objects/\(hex.prefix(2))/\(hex.dropFirst(2))"
    }
    /// refs/<name>/@versions/<version>.
    public static func versionRefPath(_ name: ModelName, _ version: SemVer) -> String { versionRefPath(name.value, version.description) }
    /// The same from names already checked (a manifest's).
    public static func versionRefPath(_ name: String, _ version: String) -> String { "refs/\(name)/@versions/\(version)" }
    /// refs/<name>/@stages/<stage>.
    public static func stageRefPath(_ name: ModelName, _ stage: String) -> String { "refs/\(name.value)/@stages/\(stage)" }
    /// packs/<id>.pack.
    public static func packPath(_ id: PackID) -> String { "packs/\(id.hex).pack" }
    /// packs/<id>.idx.
    public static func packIndexPath(_ id: PackID) -> String { "packs/\(id.hex).idx" }
    /// deltas/<target>.<base> of `set`.
    public static func deltaSetPath(_ set: DeltaSet) -> String { deltaSetPath(target: set.target, base: set.base) }
    /// deltas/<target>.<base>.
    public static func deltaSetPath(target: SHA256Digest, base: SHA256Digest) -> String { "deltas/\(target.hex).\(base.hex)" }
    /// refs/<name>/@stages: the directory of a model's stage refs.
    public static func stagesDirectory(_ name: ModelName) -> String { "refs/\(name.value)/@stages" }
    /// A model's registry record (`rel` is its path under the model: `history`, `@rollouts/STAGE`, …).
    public static func registryPath(_ model: String, _ rel: String) -> String { "registry/\(model)/\(rel)" }
    /// registry/<model>/@rollouts/<stage>: a stage's rollout record.
    public static func rolloutPath(_ model: String, stage: String) -> String { registryPath(model, "@rollouts/\(stage)") }
    /// A model's entries file, named by its SHA-256.
    public static func manifestEntriesPath(_ sha256: SHA256Digest) -> String { "manifests/\(sha256.hex).json" }
    /// manifest.json: what a published store holds (a remote only).
    public static let manifest = "manifest.json"
    /// config: the store's configuration.
    public static let config = "config"
}
