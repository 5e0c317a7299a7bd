import Foundation
import GRDB
import SharePointNaming

/// How big a demo tenant to make. The same options and seed always make the same tenant.
public struct SeedOptions: Sendable {
    public var seed: UInt64 = 1
    /// Records per object (Accounts, Opportunities, Cases).
    public var records = 40
    public var docsPerRecord = 3
    /// One extra document of this size under Acme Corp, for benchmarks.
    public var largeFileSize: Int64?
    /// A folder `Bulk` under Acme Corp with this many small files, for paging tests.
    public var bulkFolderSize: Int?

    public init(seed: UInt64 = 1, records: Int = 40, docsPerRecord: Int = 3, largeFileSize: Int64? = nil, bulkFolderSize: Int? = nil) {
        self.seed = seed
        self.records = records
        self.docsPerRecord = docsPerRecord
        self.largeFileSize = largeFileSize
        self.bulkFolderSize = bulkFolderSize
    }
}

/// SplitMix64: small, fast and the same on every platform, so seeds reproduce (the tenant, the fault
/// dice, the parsers' fuzz tests).
public struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Which record folder each object's documents live in (the `folder` link model).
enum RecordFolders {
    static let objects: [(object: String, directory: String, nameTemplate: String, folderTemplate: String)] = [
        ("Account", "Accounts", "{Name}", "Accounts/{Name} ({Id})"),
        ("Opportunity", "Opportunities", "{OpportunityNumber__c} {Name}", "Opportunities/{Name} ({Id})"),
        ("Case", "Cases", "{CaseNumber} {Subject}", "Cases/{CaseNumber} ({Id})"),
    ]
}

struct Seeder {
    let options: SeedOptions
    let store: SandboxStore
    let hostname = "contoso.sharepoint.com"
    private var rng: SeededGenerator
    private var changeSeq: Int64 = 0
    private var recordSeq: Int64 = 0
    private var listItemIDs: [String: Int] = [:]

    init(options: SeedOptions, store: SandboxStore) {
        self.options = options
        self.store = store
        rng = SeededGenerator(seed: options.seed)
    }

    static let hardAccountNames = [
        "Acme Corp", "Smith/Wesson Partners", "Contoso: EMEA", "Fabrikam Inc.", "Müller & Söhne GmbH",
        "株式会社サンプル商事", "Northwind Traders", "Northwind Traders", "What? Why* Ltd",
        "The International Consolidated Amalgamated Holdings of Greater Metropolitan Regional Development, "
            + "Infrastructure, Engineering, Logistics, Procurement, Manufacturing, Distribution and Allied Services "
            + "for the Northern, Southern, Eastern and Western Territories and All Dependencies Thereof Incorporated (Worldwide)",
        "  Leading Spaces & Trailing. ", "100% Organic #1 Farms",
    ]
    static let accountStems = ["Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay", "Soylent", "Tyrell",
                               "Cyberdyne", "Wonka", "Oscorp", "Gringotts", "Pied Piper", "Dunder Mifflin", "Bluth", "Monarch",
                               "Aperture", "Black Mesa", "Massive Dynamic", "Nakatomi", "Prestige", "Sterling", "Zorg"]
    static let accountSuffixes = ["Corp", "Industries", "GmbH", "Ltd", "S.A.", "Holdings", "Labs", "Group", "AG", "LLC", "Partners", "Systems"]
    static let opportunityKinds = ["renewal", "expansion", "new logo", "upsell", "pilot", "services", "migration", "support plan"]
    static let caseSubjects = ["Login fails after update", "Invoice discrepancy", "Slow dashboard", "Data export: missing rows",
                               "Password reset", "API returns 500", "Printer jam", "Shipment delayed", "Wrong currency on quote",
                               "Cannot attach files", "License count wrong", "Sync stuck at 99%"]
    static let cities = [("Seattle", "USA"), ("Berlin", "Germany"), ("Tokyo", "Japan"), ("São Paulo", "Brazil"), ("Paris", "France"),
                         ("Sydney", "Australia"), ("Toronto", "Canada"), ("Mumbai", "India"), ("London", "United Kingdom")]

    static let documentTemplates: [String: [(path: String, type: String)]] = [
        "Account": [("Contracts/MSA-{year}.pdf", "Contract"), ("Contracts/NDA-{year}.pdf", "Contract"), ("Account Plan {year}.docx", "Plan"),
                    ("Org Chart.pptx", "Presentation"), ("Invoices/INV-{n}.pdf", "Invoice"), ("Notes.txt", "Note"),
                    ("Pricing.xlsx", "Spreadsheet"), ("Contracts/SOW-{n}.docx", "Contract")],
        "Opportunity": [("Proposals/Proposal v{v}.docx", "Proposal"), ("Quote-{n}.pdf", "Quote"), ("Pricing.xlsx", "Spreadsheet"),
                        ("Proposals/Pitch Deck.pptx", "Presentation"), ("RFP Response.docx", "Proposal"), ("Notes.md", "Note")],
        "Case": [("Case Log.txt", "Case Log"), ("Screenshots/screen-{n}.png", "Screenshot"), ("Diagnostics.csv", "Diagnostics"),
                 ("Customer Email.eml", "Correspondence"), ("Attachments/logs-{n}.zip", "Diagnostics")],
    ]

    // MARK: Seeding

    mutating func run() throws {
        let secrets = SandboxCredentials.generate()
        try store.pool.write { db in
            try seed(db, secrets: secrets)
        }
        if let largeID = try store.meta("largeFileItemId"), let item = try store.item(id: largeID) {
            try ContentGenerator.materialize(item: item, store: store)
        }
    }

    private mutating func seed(_ db: Database, secrets: SandboxCredentials) throws {
        let created = "2024-01-15T09:00:00Z"
        func meta(_ key: String, _ value: String) throws {
            try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", arguments: [key, value])
        }
        try meta("seed", String(options.seed))
        for (key, value) in secrets.metaEntries { try meta(key, value) }

        let rootSite = SiteRow(id: "\(hostname),\(guid()),\(guid())", hostname: hostname, path: "/", name: "root",
                               displayName: "Contoso", webUrl: "https://\(hostname)", created: created)
        let salesSite = SiteRow(id: "\(hostname),\(guid()),\(guid())", hostname: hostname, path: "/sites/Sales", name: "Sales",
                                displayName: "Sales", webUrl: "https://\(hostname)/sites/Sales", created: created)
        try rootSite.insert(db)
        try salesSite.insert(db)
        _ = try makeDrive(db, site: rootSite, name: "Documents", urlName: "Shared%20Documents", isDefault: true)
        let documents = try makeDrive(db, site: salesSite, name: "Documents", urlName: "Shared%20Documents", isDefault: true)
        _ = try makeDrive(db, site: salesSite, name: "Archive", urlName: "Archive", isDefault: false)
        try insertColumns(db, listID: documents.drive.listId)
        try meta("salesSiteId", salesSite.id)
        try meta("documentsDriveId", documents.drive.id)

        let accounts = try seedRecords(db, drive: documents.drive, root: documents.root, users: SandboxUser.demo(domain: secrets.tenantDomain))
        if let largeFileSize = options.largeFileSize, let acme = accounts.first {
            let folder = try ensureFolder(db, drive: documents.drive, parent: acme.folder, name: "Large Files")
            let item = try insertFile(db, drive: documents.drive, parent: folder, name: "large-file.bin", size: largeFileSize,
                                      fields: ["DocumentType": "Media", "RecordId": acme.id, "Customer": acme.name])
            try meta("largeFileItemId", item.id)
        }
        if let bulk = options.bulkFolderSize, let acme = accounts.first {
            let folder = try ensureFolder(db, drive: documents.drive, parent: acme.folder, name: "Bulk")
            for index in 0..<bulk {
                try insertFile(db, drive: documents.drive, parent: folder, name: String(format: "item-%05d.txt", index),
                               size: 64 + Int64(index % 512), fields: ["DocumentType": "Note", "RecordId": acme.id])
            }
            try meta("bulkFolderItemId", folder.id)
        }
        try meta("seeded", "1")
    }

    private struct SeededAccount { var id: String; var name: String; var folder: ItemRow }

    private mutating func seedRecords(_ db: Database, drive: DriveRow, root: ItemRow, users: [SandboxUser]) throws -> [SeededAccount] {
        let user = SalesforceID.make(prefix: "005", serial: 1)
        try insertRecord(db, type: "User", id: user, fields: ["Name": "Integration User", "Username": "integration@contoso.example",
                                                             "Email": "integration@contoso.example"], modified: 0)
        for person in users {
            try insertRecord(db, type: "User", id: person.salesforceUserID,
                             fields: ["Name": person.displayName, "Username": person.userPrincipalName, "Email": person.userPrincipalName, "Title": person.title],
                             modified: 0)
        }
        // Who owns what: the sales rep and the manager take turns with accounts and opportunities; the
        // support agent owns every case. Each record folder's permissions follow (see SharePointPermissions).
        func owner(_ role: SandboxUser.Role) -> SandboxUser? { users.first { $0.role == role } }
        func owner(of object: String, index: Int) -> SandboxUser? {
            object == "Case" ? owner(.supportAgent) : owner(index % 2 == 0 ? .salesRep : .manager)
        }
        func restrict(_ folder: ItemRow, object: String, index: Int) throws {
            for (principal, role) in SharePointPermissions.recordFolderGrants(object: object, owner: owner(of: object, index: index)) {
                try db.cachedStatement(sql: "INSERT INTO itemGrant (itemId, principal, role) VALUES (?, ?, ?)").execute(arguments: [folder.id, principal, role])
            }
        }
        try insertRecord(db, type: "ExternalDataSource", id: SalesforceID.make(prefix: "0XC", serial: 1),
                         fields: ["DeveloperName": "SharePoint", "MasterLabel": "SharePoint Online",
                                  "Type": "SharePoint_Online", "Endpoint": "https://\(hostname)/sites/Sales"], modified: 0)
        var topFolders: [String: ItemRow] = [:]
        for entry in RecordFolders.objects {
            topFolders[entry.object] = try ensureFolder(db, drive: drive, parent: root, name: entry.directory)
        }

        let count = max(0, options.records)
        var accounts: [SeededAccount] = []
        for index in 0..<count {
            let id = SalesforceID.make(prefix: "001", serial: index + 1)
            let name = accountName(index)
            let (city, country) = Self.cities[index % Self.cities.count]
            let fields: [String: Any] = [
                "Name": name, "AccountNumber": String(format: "ACC-%05d", index + 1),
                "Industry": SalesforceSchema.industries[index % SalesforceSchema.industries.count],
                "Type": index % 4 == 3 ? "Prospect" : "Customer - Direct", "BillingCity": city, "BillingCountry": country,
                "Phone": String(format: "+1 206 555 %04d", index % 10_000), "Website": "https://www.example.com/\(index + 1)",
                "AnnualRevenue": Double(1_000_000 + Int(rng.next() % 90_000) * 1_000), "NumberOfEmployees": 10 + Int(rng.next() % 5_000),
                "Description": "Demo account \(index + 1)", "OwnerId": owner(of: "Account", index: index)?.salesforceUserID ?? user,
            ]
            let modified = try insertRecord(db, type: "Account", id: id, fields: fields, modified: index)
            let folder = try recordFolder(db, drive: drive, top: topFolders["Account"]!, name: name, id: id, modified: modified)
            try restrict(folder, object: "Account", index: index)
            try seedDocuments(db, drive: drive, folder: folder, object: "Account", columns: ["Customer": name, "RecordId": id])
            accounts.append(SeededAccount(id: id, name: name, folder: folder))
        }

        for index in 0..<count {
            let id = SalesforceID.make(prefix: "006", serial: index + 1)
            let account = accounts[index == 23 ? 0 : (index * 7 + 3) % max(1, accounts.count)]
            let number = "OPP-\(1001 + index)"
            let name = index == 23 ? "Acme renewal"
                : "\(account.name.split(separator: " ").first.map(String.init) ?? "Deal") \(Self.opportunityKinds[index % Self.opportunityKinds.count])"
            let fields: [String: Any] = [
                "Name": name, "OpportunityNumber__c": number, "AccountId": account.id,
                "StageName": SalesforceSchema.stages[index % SalesforceSchema.stages.count],
                "Amount": Double(5_000 + Int(rng.next() % 500) * 1_000), "CloseDate": String(format: "2026-%02d-%02d", 1 + index % 12, 1 + index % 28),
                "Probability": Double([10, 20, 50, 75, 100, 0][index % 6]), "Type": "Existing Business - Renewal",
                "OwnerId": owner(of: "Opportunity", index: index)?.salesforceUserID ?? user,
            ]
            let modified = try insertRecord(db, type: "Opportunity", id: id, fields: fields, modified: index)
            let folder = try recordFolder(db, drive: drive, top: topFolders["Opportunity"]!, name: name, id: id, modified: modified)
            try restrict(folder, object: "Opportunity", index: index)
            try seedDocuments(db, drive: drive, folder: folder, object: "Opportunity",
                              columns: ["Customer": account.name, "DealIdentifier": number, "RecordId": id])
        }

        for index in 0..<count {
            let id = SalesforceID.make(prefix: "500", serial: index + 1)
            let account = accounts[(index * 5 + 1) % max(1, accounts.count)]
            let number = String(format: "%08d", 1001 + index)
            let subject = index == 25 ? "Printer jam" : Self.caseSubjects[index % Self.caseSubjects.count]
            let fields: [String: Any] = [
                "CaseNumber": number, "Subject": subject, "Status": SalesforceSchema.caseStatuses[index % 4],
                "Priority": ["High", "Medium", "Low"][index % 3], "Origin": ["Phone", "Email", "Web"][index % 3],
                "AccountId": account.id, "Description": "Reported by \(account.name)",
                "OwnerId": owner(of: "Case", index: index)?.salesforceUserID ?? user,
            ]
            let modified = try insertRecord(db, type: "Case", id: id, fields: fields, modified: index)
            let folder = try recordFolder(db, drive: drive, top: topFolders["Case"]!, name: number, id: id, modified: modified)
            try restrict(folder, object: "Case", index: index)
            try seedDocuments(db, drive: drive, folder: folder, object: "Case",
                              columns: ["Customer": account.name, "CaseNumber": number, "RecordId": id])
        }
        return accounts
    }

    private func accountName(_ index: Int) -> String {
        if index < Self.hardAccountNames.count { return Self.hardAccountNames[index] }
        let stem = Self.accountStems[index % Self.accountStems.count]
        let suffix = Self.accountSuffixes[(index / Self.accountStems.count) % Self.accountSuffixes.count]
        let round = index / (Self.accountStems.count * Self.accountSuffixes.count)
        return round == 0 ? "\(stem) \(suffix)" : "\(stem) \(suffix) \(round + 1)"
    }

    private mutating func seedDocuments(_ db: Database, drive: DriveRow, folder: ItemRow, object: String, columns: [String: String]) throws {
        var templates = Self.documentTemplates[object] ?? []
        templates.shuffle(using: &rng)
        if columns["Customer"] == Self.hardAccountNames[0], object == "Account" {
            // The example everyone reads first: Accounts/Acme Corp/Contracts/MSA-2026.pdf.
            templates.insert(("Contracts/MSA-2026.pdf", "Contract"), at: 0)
        }
        var folders: [String: ItemRow] = [:]
        var usedNames: Set<String> = []
        for index in 0..<options.docsPerRecord {
            let template = templates[index % templates.count]
            var path = template.path
                .replacingOccurrences(of: "{year}", with: String(2024 + index % 3))
                .replacingOccurrences(of: "{n}", with: String(1000 + Int(rng.next() % 9000)))
                .replacingOccurrences(of: "{v}", with: String(1 + index))
            if index >= templates.count {
                let dot = path.lastIndex(of: ".") ?? path.endIndex
                path.insert(contentsOf: " (\(index / templates.count + 1))", at: dot)
            }
            var parent = folder
            var parts = path.split(separator: "/").map(String.init)
            for part in parts.dropLast() {
                if let existing = folders[part] { parent = existing; continue }
                parent = try ensureFolder(db, drive: drive, parent: parent, name: part)
                folders[part] = parent
            }
            var fields = columns
            fields["DocumentType"] = template.type
            // Two templates can make the same name (MSA-{year}): SharePoint holds one name per folder.
            var name = parts.removeLast()
            var copy = 2
            while !usedNames.insert("\(parent.id)/\(name.lowercased())").inserted {
                let dot = (name as NSString).deletingPathExtension
                let ext = (name as NSString).pathExtension
                name = "\(dot.replacingOccurrences(of: " (\(copy - 1))", with: "")) (\(copy)).\(ext)"
                copy += 1
            }
            try insertFile(db, drive: drive, parent: parent, name: name, size: documentSize(), fields: fields)
        }
    }

    /// Mostly small documents, log-uniform from 1 KiB to 2 MiB, with an occasional multi-block one.
    private mutating func documentSize() -> Int64 {
        if rng.next() % 25 == 0 { return Int64(5 << 20) + Int64(rng.next() % UInt64(7 << 20)) }
        let exponent = 10 + Double(rng.next() % 1000) / 1000 * 11
        return Int64(pow(2, exponent))
    }

    // MARK: Rows

    private mutating func makeDrive(_ db: Database, site: SiteRow, name: String, urlName: String, isDefault: Bool) throws -> (drive: DriveRow, root: ItemRow) {
        let driveID = "b!" + randomString(length: 64, alphabet: Self.driveAlphabet)
        let rootID = itemID()
        let drive = DriveRow(id: driveID, siteId: site.id, name: name, description: "", webUrl: "\(site.webUrl)/\(urlName)",
                             listId: guid(), rootId: rootID, created: site.created, isDefault: isDefault)
        try drive.insert(db)
        let root = ItemRow(id: rootID, driveId: driveID, parentId: nil, name: "root", isFolder: true, size: 0, version: 1, contentVersion: 1,
                           created: site.created, modified: site.created, fsCreated: site.created, fsModified: site.created,
                           mimeType: nil, quickXorHash: nil, blob: nil, generator: nil, listItemId: 0, uniqueId: guid(), fields: "{}",
                           createdBy: "System Account", modifiedBy: "System Account", deleted: false, changeSeq: nextChange())
        try root.insert(db)
        return (drive, root)
    }

    private func insertColumns(_ db: Database, listID: String) throws {
        for (position, definition) in SharePointColumns.documentLibrary.enumerated() {
            let data = try JSONSerialization.data(withJSONObject: definition, options: [.sortedKeys])
            try db.execute(sql: "INSERT INTO columnDefinition (listId, name, position, definition) VALUES (?, ?, ?, ?)",
                           arguments: [listID, definition["name"] as! String, position, String(decoding: data, as: UTF8.self)])
        }
    }

    /// Record folders carry the record Id, so they are new by construction: no lookup needed.
    private mutating func recordFolder(_ db: Database, drive: DriveRow, top: ItemRow, name: String, id: String, modified: String) throws -> ItemRow {
        try insertItem(db, drive: drive, parent: top, name: "\(SharePointNames.sanitize(name, maxLength: 100)) (\(id))", isFolder: true, size: 0, fields: [:])
    }

    private mutating func ensureFolder(_ db: Database, drive: DriveRow, parent: ItemRow, name: String) throws -> ItemRow {
        if let existing = try ItemRow.fetchOne(db, sql: "SELECT * FROM item WHERE parentId = ? AND name = ? COLLATE NOCASE AND deleted = 0",
                                               arguments: [parent.id, name]) {
            return existing
        }
        return try insertItem(db, drive: drive, parent: parent, name: name, isFolder: true, size: 0, fields: [:])
    }

    @discardableResult
    private mutating func insertFile(_ db: Database, drive: DriveRow, parent: ItemRow, name: String, size: Int64, fields: [String: String]) throws -> ItemRow {
        try insertItem(db, drive: drive, parent: parent, name: name, isFolder: false, size: size, fields: fields)
    }

    private mutating func insertItem(_ db: Database, drive: DriveRow, parent: ItemRow, name: String, isFolder: Bool, size: Int64, fields: [String: String]) throws -> ItemRow {
        let stamp = randomDate()
        let listItemID = (listItemIDs[drive.listId] ?? 0) + 1
        listItemIDs[drive.listId] = listItemID
        let fieldsJSON = FlatJSON.encode(fields)
        let ext = (name as NSString).pathExtension.lowercased()
        let item = ItemRow(id: itemID(), driveId: drive.id, parentId: parent.id, name: name, isFolder: isFolder, size: size,
                           version: 1, contentVersion: 1, created: stamp, modified: stamp, fsCreated: stamp, fsModified: stamp,
                           mimeType: isFolder ? nil : MimeTypes.forExtension(ext), quickXorHash: nil, blob: nil,
                           generator: isFolder ? nil : "\(options.seed):\(rng.next())", listItemId: listItemID, uniqueId: guid(),
                           fields: fieldsJSON, createdBy: "Integration User", modifiedBy: "Integration User", deleted: false,
                           changeSeq: nextChange())
        // A cached statement: seeding inserts tens of thousands of rows, and parsing SQL each time would dominate.
        try db.cachedStatement(sql: """
            INSERT INTO item (id, driveId, parentId, name, isFolder, size, version, contentVersion, created, modified, fsCreated, fsModified,
                mimeType, quickXorHash, blob, generator, listItemId, uniqueId, fields, createdBy, modifiedBy, deleted, changeSeq)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [item.id, item.driveId, item.parentId, item.name, item.isFolder, item.size, item.version, item.contentVersion,
                             item.created, item.modified, item.fsCreated, item.fsModified, item.mimeType, item.quickXorHash, item.blob,
                             item.generator, item.listItemId, item.uniqueId, item.fields, item.createdBy, item.modifiedBy, item.deleted,
                             item.changeSeq])
        return item
    }

    @discardableResult
    private mutating func insertRecord(_ db: Database, type: String, id: String, fields: [String: Any], modified index: Int) throws -> String {
        let created = SalesforceTime.format(Date(timeIntervalSince1970: 1_704_067_200 + Double(index % 600) * 86_400 / 2))
        let modified = SalesforceTime.format(Date(timeIntervalSince1970: 1_735_689_600 + Double(index % 600) * 86_400 / 2 + Double(rng.next() % 86_400)))
        let json = FlatJSON.encode(RecordRow.withAuditFields(fields, id: id, created: created, modified: modified))
        recordSeq += 1
        let seq = recordSeq
        try db.cachedStatement(sql: "INSERT INTO record (id, type, fields, systemModstamp, isDeleted, seq) VALUES (?, ?, ?, ?, 0, ?)")
            .execute(arguments: [id, type, json, modified, seq])
        return modified
    }

    // MARK: Random pieces

    private mutating func nextChange() -> Int64 { changeSeq += 1; return changeSeq }

    private mutating func randomDate() -> String {
        GraphTime.format(Date(timeIntervalSince1970: 1_704_067_200 + Double(rng.next() % (86_400 * 1_000))))
    }

    private static let driveAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    private mutating func itemID() -> String { RandomIDs.itemID(using: &rng) }
    private mutating func guid() -> String { RandomIDs.guid(using: &rng) }
    private mutating func randomString(length: Int, alphabet: [UInt8]) -> String { RandomIDs.string(length: length, alphabet: alphabet, using: &rng) }
}

/// Identifiers in SharePoint's shapes: drive item ids (`01` + 32 base-32 characters) and GUIDs.
/// Seeded for the demo tenant, random for items made at run time.
enum RandomIDs {
    private static let base32 = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)
    private static let hex = Array("0123456789ABCDEF".utf8)

    static func itemID() -> String {
        var generator = SystemRandomNumberGenerator()
        return itemID(using: &generator)
    }

    static func guid() -> String {
        var generator = SystemRandomNumberGenerator()
        return guid(using: &generator)
    }

    static func itemID<G: RandomNumberGenerator>(using generator: inout G) -> String {
        "01" + string(length: 32, alphabet: base32, using: &generator)
    }

    static func guid<G: RandomNumberGenerator>(using generator: inout G) -> String {
        var bytes = Array(string(length: 32, alphabet: hex, using: &generator).utf8)
        for position in [20, 16, 12, 8] { bytes.insert(UInt8(ascii: "-"), at: position) }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func string<G: RandomNumberGenerator>(length: Int, alphabet: [UInt8], using generator: inout G) -> String {
        var bytes = [UInt8](repeating: 0, count: length)
        for index in 0..<length { bytes[index] = alphabet[Int(generator.next() % UInt64(alphabet.count))] }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The columns of the seeded document library, as `GET .../columns` reports them.
enum SharePointColumns {
    static var documentLibrary: [[String: Any]] { [
        column("Customer", "Customer", ["text": ["allowMultipleLines": false, "maxLength": 255]]),
        column("DealIdentifier", "Deal Identifier", ["text": ["allowMultipleLines": false, "maxLength": 64]]),
        column("DocumentType", "Document Type", ["choice": ["allowTextEntry": true, "displayAs": "dropDownMenu", "choices": [
            "Contract", "Proposal", "Quote", "Invoice", "Plan", "Presentation", "Spreadsheet", "Note", "Case Log", "Screenshot",
            "Diagnostics", "Correspondence", "Media", "Other"]]]),
        column("CaseNumber", "Case Number", ["text": ["allowMultipleLines": false, "maxLength": 32]]),
        column("RecordId", "CRM Record Id", ["text": ["allowMultipleLines": false, "maxLength": 18]], indexed: true),
        column("Amount", "Amount", ["currency": ["locale": "en-us"]]),
        column("ExpiresOn", "Expires On", ["dateTime": ["displayAs": "default", "format": "dateOnly"]]),
        column("Confidential", "Confidential", ["boolean": [String: Any]()]),
        column("Created", "Created", ["dateTime": ["displayAs": "default", "format": "dateTime"]], readOnly: true),
        column("Modified", "Modified", ["dateTime": ["displayAs": "default", "format": "dateTime"]], readOnly: true),
        column("Author", "Created By", ["personOrGroup": ["allowMultipleSelection": false, "chooseFromType": "peopleOnly"]], readOnly: true),
        column("Editor", "Modified By", ["personOrGroup": ["allowMultipleSelection": false, "chooseFromType": "peopleOnly"]], readOnly: true),
        column("FileLeafRef", "Name", [:], readOnly: true),
        column("ContentType", "Content Type", [:], readOnly: true),
        column("_UIVersionString", "Version", [:], readOnly: true),
    ] }

    static var writableNames: Set<String> {
        Set(documentLibrary.filter { ($0["readOnly"] as? Bool) == false }.map { $0["name"] as! String })
    }

    private static func column(_ name: String, _ display: String, _ facet: [String: Any], readOnly: Bool = false, indexed: Bool = false) -> [String: Any] {
        var definition: [String: Any] = [
            "id": String(format: "00000000-0000-0000-0000-%012llx", name.utf8.reduce(UInt64(5381)) { ($0 &* 33 &+ UInt64($1)) & 0xFFFF_FFFF_FFFF }),
            "name": name, "displayName": display, "description": "", "hidden": false, "readOnly": readOnly,
            "required": false, "indexed": indexed, "enforceUniqueValues": false, "columnGroup": readOnly ? "_Hidden" : "Custom Columns",
        ]
        definition.merge(facet) { $1 }
        return definition
    }
}

/// JSON for the flat string/number/bool maps seeding writes by the hundred thousand.
/// Foundation's JSONSerialization was a third of the seeding time; these maps need none of its generality.
enum FlatJSON {
    static func encode(_ object: [String: Any]) -> String {
        var out = "{"
        var first = true
        for (key, value) in object {
            if !first { out += "," }
            first = false
            out += quoted(key) + ":"
            switch value {
            case let text as String: out += quoted(text)
            case let flag as Bool: out += flag ? "true" : "false"
            case let number as Int: out += String(number)
            case let number as Int64: out += String(number)
            case let number as Double: out += number.rounded() == number && abs(number) < 1e15 ? String(Int64(number)) : String(number)
            default: out += "null"
            }
        }
        return out + "}"
    }

    private static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
