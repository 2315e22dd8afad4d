// A pack's name: 32 random lowercase hex digits. Delta sets and manifests name packs, so the
// name is a format value; the pack files themselves are the store's (Store/Pack.swift).

import Foundation

/// A pack's name: 128 random bits, as the 32 hex digits of packs/<id>.pack and .idx.
public struct PackID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The 32 lowercase hex digits.
    public let hex: String

    /// The id spelled by `hex`, or nil unless it is 32 lowercase hex digits.
    public init?(hex: String) {
        guard hex.utf8.count == 32, Hex.isHex(Substring(hex)), hex == hex.lowercased() else { return nil }
        self.hex = hex
    }

    /// A fresh id for a new pack.
    public static func random() -> PackID { PackID(hex: FileSystem.randomHex(16))! }

    /// The hex digits.
    public var description: String { hex }
    /// Ids in hex order (the order pack lists are written in).
    public static func < (a: PackID, b: PackID) -> Bool { a.hex < b.hex }
}
