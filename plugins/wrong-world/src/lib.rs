//! `wrong-world`: a valid component that implements some other world. Loading it as a handler
//! must fail with an error that names the missing `sluice:plugin/message-handler` export.

wit_bindgen::generate!({
    inline: "
        package other:thing;
        world greeter {
            export greet: func(name: string) -> string;
        }
    ",
});

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        format!("hello, {name}")
    }
}

export!(Greeter);
