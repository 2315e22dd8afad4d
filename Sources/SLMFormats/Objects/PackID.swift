// A pack's name: 32 random lowercase hex digits. Delta sets and manifests name packs, so the
// name is a format value; the pack files themselves are the store's (Store/Pack.swift).

import Foundation

public struct PackID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let hex: String  // 32 lowercase hex digits

    public init?(hex: String) {
        guard hex.utf8.count == 32, Hex.isHex(Substring(hex)), hex == hex.lowercased() else { return nil }
        self.hex = hex
    }

    public static func random() -> PackID { PackID(hex: FileSystem.randomHex(16))! }

    public var description: String { hex }
    public static func < (a: PackID, b: PackID) -> Bool { a.hex < b.hex }
}
