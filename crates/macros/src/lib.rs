//! The `#[on_proxy]` attribute of FrameX for Rust. Use it through the `framex`
//! crate (`#[framex::on_proxy]`): the code it writes refers to `::framex`.
//!
//! It turns an `async fn` into a proxy function: the same call runs the body here,
//! or goes to the FrameX instance that configuration lists the function for.
//! It does no IO and knows nothing of configuration; the generated code asks the
//! FrameX runtime installed in the process at call time.
//!
//! ```
//! #[framex::on_proxy(name = "your_module.build_report")]
//! async fn build_report(job_id: String) -> Result<String, framex::Error> {
//!     Ok(format!("report of {job_id}"))
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // No FrameX runtime is installed here, so the body runs in place; an
//! // application whose configuration lists the name for a URL sends it there.
//! assert_eq!(build_report("j-1".into()).await?, "report of j-1");
//! # Ok::<(), framex::Error>(())
//! # }).unwrap();
//! ```

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Error, FnArg, Ident, ItemFn, LitStr, Pat, ReturnType, Type};

/// Makes an `async fn` a FrameX proxy function.
///
/// See `framex::on_proxy` for the documentation.
#[proc_macro_attribute]
pub fn on_proxy(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

fn expand(attr: TokenStream2, item: TokenStream2) -> Result<TokenStream2, Error> {
    let name = parse_name(attr)?;
    let function: ItemFn = syn::parse2(item)?;
    let signature = check_signature(&function)?;
    Ok(generate(&function, &signature, name))
}

/// `name = "module.func"`, the only argument the attribute takes.
fn parse_name(attr: TokenStream2) -> Result<Option<LitStr>, Error> {
    let mut name = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            if name.is_some() {
                return Err(meta.error("`name` is given twice"));
            }
            let value: LitStr = meta.value()?.parse()?;
            let text = value.value();
            if text.trim().is_empty() {
                return Err(Error::new(
                    value.span(),
                    "the proxy function name must not be empty",
                ));
            }
            if text.len() > 256 {
                return Err(Error::new(
                    value.span(),
                    "the proxy function name is longer than the 256 bytes FrameX accepts",
                ));
            }
            if text.chars().any(char::is_whitespace) {
                return Err(Error::new(
                    value.span(),
                    format!("the proxy function name `{text}` must not contain whitespace"),
                ));
            }
            name = Some(value);
            Ok(())
        } else {
            Err(meta
                .error("unknown #[on_proxy] argument; the only one is `name = \"module.func\"`"))
        }
    });
    parser.parse2(attr)?;
    Ok(name)
}

/// A parameter that travels as one keyword argument.
struct Param {
    /// The binding as the body sees it (`mut` kept).
    pattern: Pat,
    /// The plain name, used for the keyword and the generated fields.
    ident: Ident,
    ty: Type,
}

struct Signature {
    params: Vec<Param>,
    output: Type,
}

fn check_signature(function: &ItemFn) -> Result<Signature, Error> {
    let sig = &function.sig;
    let fn_name = &sig.ident;
    if sig.asyncness.is_none() {
        return Err(Error::new(
            sig.fn_token.span,
            format!(
                "#[on_proxy] accepts only `async fn`: `{fn_name}` may run on another \
                 instance, so its call must be awaitable; write `async fn {fn_name}`"
            ),
        ));
    }
    if let Some(constness) = &sig.constness {
        return Err(Error::new(
            constness.span,
            "#[on_proxy] cannot be used on a `const fn`",
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        return Err(Error::new(
            unsafety.span,
            "#[on_proxy] cannot be used on an `unsafe fn`",
        ));
    }
    if let Some(abi) = &sig.abi {
        return Err(Error::new(
            abi.span(),
            "#[on_proxy] cannot be used on an `extern` function",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(Error::new_spanned(
            &sig.generics,
            format!(
                "#[on_proxy] functions cannot be generic: `{fn_name}` needs one concrete \
                 signature that another instance can call"
            ),
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(Error::new(
            variadic.span(),
            "#[on_proxy] functions cannot be variadic",
        ));
    }
    let mut params = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                return Err(Error::new_spanned(
                    receiver,
                    format!(
                        "#[on_proxy] functions must be free functions: `{fn_name}` takes \
                         `self`, which cannot be sent to another instance"
                    ),
                ));
            }
            FnArg::Typed(typed) => {
                let ident = match &*typed.pat {
                    Pat::Ident(binding) if binding.by_ref.is_none() && binding.subpat.is_none() => {
                        binding.ident.clone()
                    }
                    other => {
                        return Err(Error::new_spanned(
                            other,
                            "#[on_proxy] parameters must be plain names (`job_id: String`): \
                             each one is a keyword argument on the wire",
                        ));
                    }
                };
                check_owned(&typed.ty, &ident)?;
                params.push(Param {
                    pattern: (*typed.pat).clone(),
                    ident,
                    ty: (*typed.ty).clone(),
                });
            }
        }
    }
    let output = match &sig.output {
        ReturnType::Type(_, ty) if may_be_a_result(ty) => (**ty).clone(),
        ReturnType::Type(_, ty) => {
            return Err(Error::new_spanned(
                ty,
                format!(
                    "#[on_proxy] functions must return `Result<T, E>`: a call of `{fn_name}` \
                     may go to another instance, and that can fail"
                ),
            ));
        }
        ReturnType::Default => {
            return Err(Error::new(
                sig.paren_token.span.close(),
                format!(
                    "#[on_proxy] functions must return `Result<T, E>`: a call of `{fn_name}` \
                     may go to another instance, and that can fail"
                ),
            ));
        }
    };
    Ok(Signature { params, output })
}

/// Whether `ty` can be a `Result` at all: a path (`Result<T, E>`, `anyhow::Result<T>`
/// or an alias). The trait bounds check what the path names.
fn may_be_a_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path.qself.is_none(),
        Type::Group(group) => may_be_a_result(&group.elem),
        Type::Paren(paren) => may_be_a_result(&paren.elem),
        _ => false,
    }
}

/// Rejects parameter types that borrow: arguments are decoded from the wire into
/// owned values.
fn check_owned(ty: &Type, ident: &Ident) -> Result<(), Error> {
    let problem = match ty {
        Type::Reference(_) => "borrows",
        Type::ImplTrait(_) => "is `impl Trait`",
        Type::Ptr(_) => "is a raw pointer",
        Type::BareFn(_) => "is a function pointer",
        Type::TraitObject(_) => "is a trait object",
        _ => return Ok(()),
    };
    Err(Error::new_spanned(
        ty,
        format!(
            "#[on_proxy] parameter `{}` {problem}; parameters must be owned serde types \
             (for example `String` rather than `&str`) because they are decoded from the wire",
            ident.unraw()
        ),
    ))
}

fn generate(function: &ItemFn, signature: &Signature, name: Option<LitStr>) -> TokenStream2 {
    let fx = quote!(::framex::__private);
    let attrs = &function.attrs;
    let vis = &function.vis;
    let fn_name = &function.sig.ident;
    let body = &function.block;
    let output = &signature.output;
    let idents: Vec<&Ident> = signature.params.iter().map(|p| &p.ident).collect();
    let types: Vec<&Type> = signature.params.iter().map(|p| &p.ty).collect();
    let patterns: Vec<&Pat> = signature.params.iter().map(|p| &p.pattern).collect();
    // Where each argument is kept while the keyword arguments are read.
    let slots: Vec<Ident> = signature
        .params
        .iter()
        .map(|p| format_ident!("__framex_given_{}", p.ident.unraw()))
        .collect();
    // The keyword on the wire: the parameter's name, without `r#`.
    let keywords: Vec<LitStr> = signature
        .params
        .iter()
        .map(|p| LitStr::new(&p.ident.unraw().to_string(), p.ident.span()))
        .collect();
    let serde_crate = LitStr::new("::framex::__private::serde", Span::call_site());
    let read = quote! {
        let mut reader = kwargs.reader()?;
        #( let mut #slots: ::core::option::Option<#types> = ::core::option::Option::None; )*
        while let ::core::option::Option::Some(name) = reader.next_name()? {
            match &*name {
                #( #keywords => #slots = ::core::option::Option::Some(reader.value(#keywords)?), )*
                other => reader.unexpected(other)?,
            }
        }
        reader.finish()?;
    };
    let read_arguments = if idents.is_empty() {
        quote! { { #read } }
    } else {
        quote! {
            let (#(#idents,)*) = {
                #read
                (#( #fx::required(#slots, #keywords)?, )*)
            };
        }
    };

    let local = format_ident!("__framex_local_{}", fn_name.unraw());
    let name_const = match name {
        Some(name) => quote!(#name),
        None => {
            let fn_text = LitStr::new(&fn_name.unraw().to_string(), fn_name.span());
            // The module path is only known where the code lands, so the dotted
            // name is built there, at compile time.
            quote!({
                const PATH: &str = ::core::module_path!();
                const LEN: usize = #fx::dotted_name_len(PATH, #fn_text);
                const BYTES: [u8; LEN] = #fx::dotted_name::<LEN>(PATH, #fn_text);
                #fx::utf8(&BYTES)
            })
        }
    };
    let kwargs_struct = if idents.is_empty() {
        quote! {
            #[derive(#fx::serde::Serialize)]
            #[serde(crate = #serde_crate)]
            struct __FramexKwargs {}
        }
    } else {
        quote! {
            #[derive(#fx::serde::Serialize)]
            #[serde(crate = #serde_crate)]
            struct __FramexKwargs<'__framex> { #(#idents: &'__framex #types,)* }
        }
    };
    // Spanned at the return type, so a type that is not a valid `Result` is
    // reported where the user wrote it.
    let into_handler_result = quote_spanned! {output.span()=>
        <#output as #fx::ProxyReturn>::into_handler_result
    };
    let remote_future = quote! {
        #fx::Proxied::<_, #output>::remote
    };
    // The return type's bound (`ProxyReturn`) is checked here: spanned at the
    // return type, so a type that is not a valid `Result` is reported there.
    let returned = quote_spanned! {output.span()=>
        impl ::core::future::Future<Output = #output>
    };

    quote! {
        #(#attrs)*
        #vis fn #fn_name(#(#idents: #types),*) -> #returned {
            #kwargs_struct

            async fn #local(#(#patterns: #types),*) -> #output #body

            fn __framex_handler(kwargs: #fx::Kwargs) -> #fx::HandlerFuture {
                ::std::boxed::Box::pin(async move {
                    // Each argument read straight from the call's bytes into
                    // its parameter's type; the bytes are freed before the
                    // body runs.
                    #read_arguments
                    ::core::mem::drop(kwargs);
                    #into_handler_result(#local(#(#idents),*).await)
                })
            }

            fn __framex_type_id() -> ::core::any::TypeId {
                #fx::type_id_of(&#fn_name)
            }

            const __FRAMEX_NAME: &str = #name_const;

            #fx::inventory::submit! {
                #fx::ProxyDefinition::new(
                    __FRAMEX_NAME,
                    ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#fn_name)),
                    __framex_type_id,
                    __framex_handler,
                )
            }

            static __FRAMEX_SITE: #fx::CallSite = #fx::CallSite::new();

            // Decided when the function is called: the local future is the
            // body's own, wrapped; the remote one is boxed.
            match #fx::remote(&__FRAMEX_SITE, __FRAMEX_NAME) {
                ::core::option::Option::None => #fx::Proxied::local(#local(#(#idents),*)),
                ::core::option::Option::Some(remote) => #remote_future(
                    remote.call(&__FramexKwargs { #(#idents: &#idents),* }),
                ),
            }
        }
    }
}
