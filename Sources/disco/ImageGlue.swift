import Foundation
import DiscoCore
import DiscoImage
import DiscoGAN

// The trainer's batch source over disco's image loader. (Kept here, not yet in DiscoGAN's
// TrainingData.swift beside the domains, while data-parallel training changes makeBatchSource on
// another branch; it moves there once that lands.)


/// The trainer's view of `UnpairedLoader`: batches copied into tensors, state as a flat dictionary.
final class LoaderSource: BatchSource {
    let folderA: ImageFolder, folderB: ImageFolder
    let options: LoaderOptions
    var loader: UnpairedLoader
    private var waitBefore: Double = 0

    init(a: ImageFolder, b: ImageFolder, options: LoaderOptions) {
        folderA = a; folderB = b; self.options = options
        loader = UnpairedLoader(a: a, b: b, options: options)
    }

    func next(a: Tensor, b: Tensor) throws {
        let batch = try loader.next()
        precondition(batch.a.count == a.count && batch.b.count == b.count, "loader batch does not match the model's input shape")
        batch.a.withUnsafeBufferPointer { a.data.update(from: $0.baseAddress!, count: a.count) }
        batch.b.withUnsafeBufferPointer { b.data.update(from: $0.baseAddress!, count: b.count) }
    }

    var state: [String: Int] {
        let s = loader.state
        return ["a_epoch": s.a.epoch, "a_position": s.a.position, "b_epoch": s.b.epoch, "b_position": s.b.position]
    }

    func restore(_ s: [String: Int]) throws {
        let keys = ["a_epoch", "a_position", "b_epoch", "b_position"]
        for k in s.keys.sorted() where !keys.contains(k) {
            throw CLIError("field 'loader.\(k)' is not a field of disco's image loader (\(keys.joined(separator: ", ")))")
        }
        func value(_ k: String) throws -> Int {
            guard let v = s[k] else { throw CLIError("field 'loader.\(k)' is missing") }
            // A position past the folder's end (images removed since) starts the next epoch.
            guard v >= 0 && v <= 1 << 40 else { throw CLIError("field 'loader.\(k)' is \(v); it must be in 0...\(1 << 40)") }
            return v
        }
        let state = LoaderState(a: DomainCursor(epoch: try value("a_epoch"), position: try value("a_position")),
                                b: DomainCursor(epoch: try value("b_epoch"), position: try value("b_position")))
        waitBefore += loader.waitSeconds
        loader.stop()
        loader = UnpairedLoader(a: folderA, b: folderB, options: options, state: state)
    }

    var waitSeconds: Double { waitBefore + loader.waitSeconds }
}

/// `slice`: the positions of each batch this rank serves (data-parallel training), nil: all.
func makeBatchSource(domains: TrainingDomains, config: TrainConfig, slice: Range<Int>? = nil) throws -> BatchSource {
    var o = LoaderOptions()
    o.slice = slice
    o.batch = config.batch; o.size = config.size; o.channels = config.channels; o.seed = config.seed
    o.loadSize = config.loadSize > 0 ? config.loadSize : nil; o.flip = config.flip
    return LoaderSource(a: domains.folderA, b: domains.folderB, options: o)
}

