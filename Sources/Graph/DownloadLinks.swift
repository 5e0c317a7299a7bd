import Foundation

/// The content URLs that folder listings brought, by item id, and each listed folder's documents: a
/// listing asks for every document's URL at no extra cost, so a first read of one needs no request for
/// it. One per mount, filled by whoever lists (the tree, the reader's own folder listings) and read by
/// the block reader. Trusted for `lifetime` (the service says the URLs live about an hour, its content
/// page "a few minutes"; a stale one costs a retry with a fresh one).
public final class DownloadLinks: @unchecked Sendable {
    private let lock = NSLock()
    private var links: [String: (url: String, expires: ContinuousClock.Instant)] = [:]
    private var folders: [String: (documents: [String: ListedDocument], expires: ContinuousClock.Instant)] = [:]
    let lifetime: Duration = .seconds(300)

    public init() {}

    /// What one page of `folder`'s children, as a listing brought it, says of its documents' URLs.
    public func remember(_ items: [DriveItem], inFolder folder: String) {
        remember(documents: items.compactMap(ListedDocument.init), inFolder: folder)
    }

    /// Documents of `folder` with their URLs.
    public func remember(documents: [ListedDocument], inFolder folder: String) {
        let now = ContinuousClock.now
        lock.withLock {
            if links.count > 20_000 { links = links.filter { $0.value.expires > now } }
            if folders.count > 200 { folders = folders.filter { $0.value.expires > now } }
            var listed = folders[folder].flatMap { $0.expires > now ? $0.documents : nil } ?? [:]
            for document in documents {
                links[document.id] = (document.location, now + lifetime)
                listed[document.id] = document
            }
            folders[folder] = (listed, now + lifetime)
        }
    }

    /// The URL a recent listing brought for the document, taken: it is used once, for a first read.
    public func take(itemID: String) -> String? {
        lock.withLock {
            guard let link = links.removeValue(forKey: itemID), link.expires > .now else { return nil }
            return link.url
        }
    }

    /// The documents (with their URLs) a recent listing of the folder brought.
    public func documents(inFolder folder: String) -> [ListedDocument] {
        lock.withLock { folders[folder].flatMap { $0.expires > .now ? Array($0.documents.values) : nil } ?? [] }
    }
}
