/// mimalloc instead of glibc's malloc: allocation was about a sixth of the service's CPU
/// (`perf`: `_int_malloc`, `_int_free`, `malloc_consolidate`, ...), for small short-lived
/// buffers on many threads, which is the case mimalloc is made for.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(stock::SERVICE.main().await?)
}
