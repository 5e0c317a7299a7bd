import Foundation

/// One change the fleet's relay saw in a service's feed: identifiers only (no names, contents or field
/// values), so the shared log shows nobody anything. A mount fetches the details with its own user's
/// token, and only for entries it holds.
public struct FeedEntry: Sendable, Equatable {
    public enum Source: Sendable, Equatable, Hashable {
        /// A document or folder of a library (by drive id).
        case drive(String)
        /// A record of a CRM object (by API name).
        case object(String)
    }

    public enum Kind: String, Sendable, CaseIterable {
        /// A record that did not exist before (a drive item's creation is not told apart: its folder decides).
        case created
        case changed
        case deleted
    }

    /// The entry's place in the log.
    public var sequence: Int64
    public var source: Source
    public var kind: Kind
    /// The drive item id or the record Id.
    public var id: String
    /// A drive item's folder (its id), where the relay knows it.
    public var parentID: String?
    /// When the service changed it, as near as the relay knows.
    public var changedAt: Date

    public init(sequence: Int64 = 0, source: Source, kind: Kind, id: String, parentID: String? = nil, changedAt: Date = Date()) {
        self.sequence = sequence
        self.source = source
        self.kind = kind
        self.id = id
        self.parentID = parentID
        self.changedAt = changedAt
    }
}
