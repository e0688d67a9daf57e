include!("../build-support/git_commit.rs");

fn main() {
    git_commit();
}
