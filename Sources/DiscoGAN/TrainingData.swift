import Foundation
import DiscoCore
import DiscoImage

// What `disco train` trains on: the two domains' folders, the fixed sample images and
// --keep-best's held-out images. (The batch source over the loader is still in the CLI:
// Sources/disco/ImageGlue.swift.)

/// The two training domains (and the test folders of the CycleGAN layout, for sample images).
public struct TrainingDomains {
    public let a: String, b: String
    public let testA: String?, testB: String?
    public var folderA: ImageFolder, folderB: ImageFolder
    /// Run name for the default --out: the layout folder's name, or "A-B".
    public let name: String
}

public func resolveTrainingDomains(_ folders: [String]) throws -> TrainingDomains {
    let paths: DomainPaths
    do { paths = try resolveDomains(paths: folders) } catch { throw DiscoError("\(error)") }
    func scan(_ p: String, _ what: String) throws -> ImageFolder {
        do { return try ImageFolder(path: p) } catch { throw DiscoError("domain \(what): \(error)") }
    }
    let fa = try scan(paths.a, "A"), fb = try scan(paths.b, "B")
    let base = { (p: String) in (p as NSString).standardizingPath.split(separator: "/").last.map(String.init) ?? "run" }
    let name = folders.count == 1 ? base(folders[0]) : base(paths.a) + "-" + base(paths.b)
    return TrainingDomains(a: paths.a, b: paths.b, testA: paths.testA, testB: paths.testB, folderA: fa, folderB: fb, name: name)
}

/// `--keep-best`'s held-out images, at most 64 per domain: the test folders' when both exist,
/// else the last 5% (at least one) of each training folder, which are then left out of training.
public func holdOut(domains: inout TrainingDomains, config: TrainConfig) throws -> (a: Tensor, b: Tensor) {
    func load(_ files: [String], _ what: String) throws -> Tensor {
        let loaded = loadBatch(Array(files.prefix(64)), size: config.size, channels: config.channels)
        guard loaded.tensor.shape[0] > 0 else { throw DiscoError("--keep-best: no readable held-out image in \(what)") }
        return loaded.tensor
    }
    if let ta = domains.testA, let tb = domains.testB,
       let fa = try? ImageFolder(path: ta), let fb = try? ImageFolder(path: tb) {
        return (try load(fa.files, ta), try load(fb.files, tb))
    }
    func split(_ f: ImageFolder) throws -> (ImageFolder, [String]) {
        let n = min(64, max(1, f.count / 20))
        guard f.count - n >= 1 else {
            throw DiscoError("--keep-best: \(f.path) has \(f.count) image(s), too few to hold any out; add images or test folders (testA/, testB/)")
        }
        return f.holdingOut(n)
    }
    let (keptA, outA) = try split(domains.folderA), (keptB, outB) = try split(domains.folderB)
    domains.folderA = keptA; domains.folderB = keptB
    return (try load(outA, domains.a), try load(outB, domains.b))
}

/// Fixed images for the sample grids: the first `count` of the test folders (else of the training
/// folders), resized to the model's size and never augmented (no --load-size crop, no flip).
public func sampleTensors(domains: TrainingDomains, config: TrainConfig, count: Int) throws -> (Tensor, Tensor) {
    func pick(_ test: String?, _ train: ImageFolder) throws -> Tensor {
        var files: [String] = []
        if let test, let f = try? ImageFolder(path: test) { files = f.files }
        if files.isEmpty { files = train.files }
        let loaded = loadBatch(Array(files.prefix(count * 2)), size: config.size, channels: config.channels)
        let n = min(count, loaded.tensor.shape[0])
        guard n > 0 else { throw DiscoError("\(train.path): no readable image for the sample grid") }
        let per = config.size * config.size * config.channels
        let t = Tensor(uninitialized: [n, config.size, config.size, config.channels])
        t.data.update(from: loaded.tensor.data, count: n * per)
        return t
    }
    return (try pick(domains.testA, domains.folderA), try pick(domains.testB, domains.folderB))
}

