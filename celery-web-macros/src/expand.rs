//! Checking the function under `#[task]` and emitting its task module.

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Type, TypeParamBound,
    Visibility,
};

use crate::attr::TaskAttr;

/// Expands `#[task(attr)] item`: the function unchanged, then a module of the same name with
/// `OPTIONS`, `name`, `s`, `signature`, `delay` and the registration.
pub(crate) fn expand(attr: TokenStream, item: ItemFn) -> syn::Result<TokenStream> {
    // Report problems with the options and with the function together.
    let (options, task) = match (TaskAttr::parse(attr), TaskFn::check(&item)) {
        (Ok(options), Ok(task)) => (options, task),
        (Err(mut first), Err(second)) => {
            first.combine(second);
            return Err(first);
        }
        (Err(error), _) | (_, Err(error)) => return Err(error),
    };
    let task = task.bind(&item, options.bind.as_ref())?;
    Ok(emit(&item, &options, &task))
}

/// One task argument: the name callers use and its type.
struct Argument {
    /// The parameter's identifier, without `mut`.
    ident: Ident,
    /// The type as written by the user.
    ty: Type,
}

/// What the function returns, as far as the generated code is concerned.
enum Output {
    /// No return type: the task's value is `()`.
    Unit,
    /// `-> T`: the value is `T`.
    Value(Type),
    /// `-> Result<T, E>` or `-> TaskResult<T>`: the value is `T`, `Err` is a `TaskError`.
    Result {
        /// `T`.
        ok: Type,
        /// Where the return type starts.
        span: Span,
    },
}

/// The checked shape of the function.
struct TaskFn {
    /// The parameter receiving the `TaskContext`, when `bind`.
    context: Option<Type>,
    /// Every parameter, before `bind` splits off the first.
    params: Vec<Argument>,
    /// The task arguments, after `bind`.
    args: Vec<Argument>,
    output: Output,
}

impl TaskFn {
    /// Checks everything about the function that does not depend on the options.
    fn check(item: &ItemFn) -> syn::Result<Self> {
        let sig = &item.sig;
        let mut errors = Errors::default();
        if let Some(unsafety) = &sig.unsafety {
            errors.push(syn::Error::new_spanned(
                unsafety,
                "a task cannot be an `unsafe fn`: the worker calls it with whatever a message \
                 carries and cannot uphold a safety contract",
            ));
        }
        if let Some(param) = sig.generics.params.first() {
            let what = match param {
                syn::GenericParam::Lifetime(_) => {
                    "a task cannot have lifetime parameters: task arguments travel as JSON and \
                     must be owned serde types"
                }
                syn::GenericParam::Type(_) | syn::GenericParam::Const(_) => {
                    "a task cannot be generic: the worker builds its arguments from a JSON \
                     message, so every type must be concrete"
                }
            };
            errors.push(syn::Error::new_spanned(&sig.generics, what));
        } else if let Some(where_clause) = &sig.generics.where_clause {
            errors.push(syn::Error::new_spanned(
                where_clause,
                "a task cannot have a `where` clause: every type must be concrete",
            ));
        }
        if let Some(variadic) = &sig.variadic {
            errors.push(syn::Error::new_spanned(
                variadic,
                "a task cannot be variadic: it takes a fixed list of JSON arguments",
            ));
        }
        let mut params = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(receiver) => errors.push(syn::Error::new_spanned(
                    receiver,
                    "`#[task]` goes on a free function, not a method: a task has no `self`; move \
                     it out of the `impl` block and pass what it needs as arguments",
                )),
                FnArg::Typed(typed) => match plain_ident(&typed.pat) {
                    Some(ident) => params.push(Argument {
                        ident,
                        ty: (*typed.ty).clone(),
                    }),
                    None => errors.push(syn::Error::new_spanned(
                        &typed.pat,
                        "a task parameter must be a plain name, like `user_id: i64`: the name is \
                         also the keyword argument that callers (and Python) may use",
                    )),
                },
            }
        }
        let output = match &sig.output {
            ReturnType::Default => Output::Unit,
            ReturnType::Type(_, ty) => {
                if let Some(found) = find_impl_trait(ty) {
                    errors.push(syn::Error::new_spanned(
                        found,
                        "a task cannot return `impl Trait`: callers get the result as JSON and \
                         need a concrete type to deserialize it into",
                    ));
                }
                match result_ok_type(ty) {
                    Some(ok) => Output::Result {
                        ok: ok.clone(),
                        span: ty.span(),
                    },
                    None => Output::Value((**ty).clone()),
                }
            }
        };
        errors.finish()?;
        Ok(TaskFn {
            context: None,
            params,
            args: Vec::new(),
            output,
        })
    }

    /// Splits off the `TaskContext` parameter when the task is bound, and checks the task
    /// arguments' types.
    fn bind(mut self, item: &ItemFn, bind: Option<&syn::Path>) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let mut params = std::mem::take(&mut self.params).into_iter();
        if let Some(bind) = bind {
            match params.next() {
                Some(context) => {
                    if let Type::Reference(reference) = &context.ty {
                        errors.push(syn::Error::new_spanned(
                            reference,
                            "a bound task receives its context by value: write \
                             `ctx: TaskContext` (it is cheap to clone)",
                        ));
                    }
                    self.context = Some(context.ty);
                }
                None => errors.push(syn::Error::new_spanned(
                    bind,
                    format!(
                        "`bind` passes the task's `TaskContext` as the first parameter, but \
                         `{}` has no parameters: add `ctx: TaskContext`",
                        item.sig.ident
                    ),
                )),
            }
        }
        for arg in params {
            if let Some(found) = find_borrowed(&arg.ty) {
                errors.push(syn::Error::new_spanned(
                    found,
                    "task arguments travel as JSON and must be owned serde types: use `String` \
                     for `&str`, `Vec<T>` for `&[T]`, a concrete type for `impl Trait`",
                ));
            }
            self.args.push(arg);
        }
        errors.finish()?;
        Ok(self)
    }
}

/// Collects errors so that one expansion reports all of them.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// The identifier of `name` or `mut name`; `None` for any other pattern.
fn plain_ident(pat: &Pat) -> Option<Ident> {
    match pat {
        Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => Some(pat.ident.clone()),
        _ => None,
    }
}

/// The first reference or `impl Trait` inside an argument type.
fn find_borrowed(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Reference(_) | Type::ImplTrait(_) => Some(ty),
        _ => nested_types(ty).into_iter().find_map(find_borrowed),
    }
}

/// The first `impl Trait` inside a type.
fn find_impl_trait(ty: &Type) -> Option<&Type> {
    match ty {
        Type::ImplTrait(_) => Some(ty),
        _ => nested_types(ty).into_iter().find_map(find_impl_trait),
    }
}

/// The types directly inside `ty` (generic arguments, elements, pointees).
fn nested_types(ty: &Type) -> Vec<&Type> {
    match ty {
        Type::Array(array) => vec![&*array.elem],
        Type::Group(group) => vec![&*group.elem],
        Type::Paren(paren) => vec![&*paren.elem],
        Type::Ptr(ptr) => vec![&*ptr.elem],
        Type::Reference(reference) => vec![&*reference.elem],
        Type::Slice(slice) => vec![&*slice.elem],
        Type::Tuple(tuple) => tuple.elems.iter().collect(),
        Type::Path(path) => {
            let mut nested = Vec::new();
            if let Some(qself) = &path.qself {
                nested.push(&*qself.ty);
            }
            for segment in &path.path.segments {
                match &segment.arguments {
                    PathArguments::AngleBracketed(args) => {
                        for arg in &args.args {
                            match arg {
                                GenericArgument::Type(ty) => nested.push(ty),
                                GenericArgument::AssocType(assoc) => nested.push(&assoc.ty),
                                _ => {}
                            }
                        }
                    }
                    PathArguments::Parenthesized(args) => {
                        nested.extend(args.inputs.iter());
                        if let ReturnType::Type(_, ty) = &args.output {
                            nested.push(ty);
                        }
                    }
                    PathArguments::None => {}
                }
            }
            nested
        }
        Type::TraitObject(object) => object
            .bounds
            .iter()
            .filter_map(|bound| match bound {
                TypeParamBound::Trait(bound) => Some(&bound.path),
                _ => None,
            })
            .flat_map(|path| path.segments.iter())
            .flat_map(|segment| match &segment.arguments {
                PathArguments::AngleBracketed(args) => args
                    .args
                    .iter()
                    .filter_map(|arg| match arg {
                        GenericArgument::Type(ty) => Some(ty),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `T` when `ty` is `Result<T, ..>` or `TaskResult<T>` (by the last path segment's name).
fn result_ok_type(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Group(group) => result_ok_type(&group.elem),
        Type::Paren(paren) => result_ok_type(&paren.elem),
        Type::Path(path) if path.qself.is_none() => {
            let last = path.path.segments.last()?;
            if last.ident != "Result" && last.ident != "TaskResult" {
                return None;
            }
            let PathArguments::AngleBracketed(args) = &last.arguments else {
                return None;
            };
            args.args.iter().find_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
        }
        _ => None,
    }
}

/// Tokens written for the function's module so that they mean what they meant next to the
/// function: a path starting with `super` gains one more `super::`. (`crate::`, `self::` and
/// plain names work as they are, thanks to the module's `use super::*`.)
fn rebase(tokens: TokenStream) -> TokenStream {
    let mut out = Vec::new();
    let mut after_colons = false;
    let mut colons = 0;
    for token in tokens {
        match &token {
            TokenTree::Ident(ident) if ident == "super" && !after_colons => {
                out.push(TokenTree::Ident(Ident::new("super", ident.span())));
                out.extend(quote_spanned!(ident.span()=> ::));
                out.push(token);
                colons = 0;
                after_colons = false;
                continue;
            }
            TokenTree::Group(group) => {
                let mut rebased =
                    proc_macro2::Group::new(group.delimiter(), rebase(group.stream()));
                rebased.set_span(group.span());
                out.push(TokenTree::Group(rebased));
                colons = 0;
                after_colons = false;
                continue;
            }
            TokenTree::Punct(punct) if punct.as_char() == ':' => {
                colons += 1;
                after_colons = colons >= 2;
            }
            _ => {
                colons = 0;
                after_colons = false;
            }
        }
        out.push(token);
    }
    out.into_iter().collect()
}

/// The visibility of the module's items, one level below the function: private becomes
/// `pub(super)`, `pub(super)` becomes `pub(in super::super)`, `pub(self)` becomes `pub(super)`.
fn inner_visibility(vis: &Visibility) -> TokenStream {
    match vis {
        Visibility::Public(_) => quote!(pub),
        Visibility::Inherited => quote!(pub(super)),
        Visibility::Restricted(restricted) => {
            let path = &restricted.path;
            let first = path
                .segments
                .first()
                .map(|segment| segment.ident.to_string());
            match first.as_deref() {
                Some("self") if path.segments.len() == 1 => quote!(pub(super)),
                Some("self") => {
                    let rest = path.segments.iter().skip(1);
                    quote!(pub(in super #(:: #rest)*))
                }
                Some("super") if path.leading_colon.is_none() => {
                    quote!(pub(in super::#path))
                }
                // `pub(crate)`, `pub(in crate::a)`: absolute already.
                _ => vis.to_token_stream(),
            }
        }
    }
}

fn emit(item: &ItemFn, options: &TaskAttr, task: &TaskFn) -> TokenStream {
    let krate = options.crate_path();
    let private = quote!(#krate::__private);
    let fn_ident = &item.sig.ident;
    let module_vis = &item.vis;
    let vis = inner_visibility(&item.vis);
    let is_async = item.sig.asyncness.is_some();

    // `#[cfg]`s of the function apply to its module too.
    let cfgs = item
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg"))
        .collect::<Vec<_>>();

    let module_doc = format!("Celery task for [`fn@{fn_ident}`]: `delay`, `s`, `name`.");

    let options_value = options_tokens(options, &private);
    let explicit_name = match &options.name {
        Some(name) => quote!(::core::option::Option::Some(#name)),
        None => quote!(::core::option::Option::None),
    };

    // Errors about the return type (not `Serialize`, error type not convertible) are reported
    // on the return type.
    let (output_ty, convert, output_span) = match &task.output {
        Output::Unit => (
            quote!(()),
            quote!(#private::output_from_value),
            item.sig.ident.span(),
        ),
        Output::Value(ty) => (
            rebase(ty.to_token_stream()),
            quote!(#private::output_from_value),
            ty.span(),
        ),
        Output::Result { ok, span } => (
            rebase(ok.to_token_stream()),
            quote!(#private::output_from_result),
            *span,
        ),
    };

    let arg_idents = task.args.iter().map(|arg| &arg.ident).collect::<Vec<_>>();
    let arg_types = task
        .args
        .iter()
        .map(|arg| rebase(arg.ty.to_token_stream()))
        .collect::<Vec<_>>();
    let params = quote!(#(#arg_idents: #arg_types),*);

    // `__run`: read each argument from the message, then call the function.
    let locals = (0..task.args.len())
        .map(|index| format_ident!("__arg{}", index))
        .collect::<Vec<_>>();
    let takes = task
        .args
        .iter()
        .zip(&arg_types)
        .zip(&locals)
        .enumerate()
        .map(|(index, ((arg, ty), local))| {
            let wire_name = arg.ident.unraw().to_string();
            // Spanned so that a type that cannot be deserialized is reported on the argument.
            quote_spanned!(arg.ty.span()=> let #local: #ty = __args.take(#index, #wire_name)?;)
        })
        .collect::<Vec<_>>();
    let args_mut = if task.args.is_empty() {
        quote!()
    } else {
        quote!(mut)
    };
    let (ctx_param, ctx_arg) = match &task.context {
        Some(ty) => (
            quote!(__ctx),
            // Spanned so that a wrong context type is reported on the user's parameter.
            Some(quote_spanned!(ty.span()=> __ctx)),
        ),
        None => (quote!(_), None),
    };
    let mut call_args = ctx_arg.into_iter().collect::<Vec<_>>();
    call_args.extend(locals.iter().map(ToTokens::to_token_stream));
    let await_ = if is_async { quote!(.await) } else { quote!() };
    let mut callee = fn_ident.clone();
    callee.set_span(output_span);
    let call = quote_spanned! {output_span=>
        #convert(super::#callee(#(#call_args),*) #await_)
    };
    let body = quote! {
        #(#takes)*
        __args.finish()?;
        #call
    };
    let result_ty = quote! {
        ::core::result::Result<#private::serde_json::Value, #private::TaskError>
    };
    let (run, runner) = if is_async {
        (
            quote! {
                #[doc(hidden)]
                #[allow(deprecated)]
                fn __run(
                    #ctx_param: #private::TaskContext,
                    #args_mut __args: #private::TaskArgs
                ) -> #private::BoxFuture<'static, #result_ty> {
                    ::std::boxed::Box::pin(async move { #body })
                }
            },
            quote!(#private::TaskRunner::Async(__run)),
        )
    } else {
        (
            quote! {
                #[doc(hidden)]
                #[allow(deprecated)]
                fn __run(
                    #ctx_param: #private::TaskContext,
                    #args_mut __args: #private::TaskArgs
                ) -> #result_ty {
                    #body
                }
            },
            quote!(#private::TaskRunner::Blocking(__run)),
        )
    };

    // One check per argument, reported on the argument's type.
    let checks =
        task.args.iter().zip(&arg_types).map(
            |(arg, ty)| quote_spanned!(arg.ty.span()=> #private::assert_task_argument::<#ty>();),
        );

    let allow_many = quote!(#[allow(clippy::too_many_arguments)]);

    quote! {
        #item

        #(#cfgs)*
        #[doc = #module_doc]
        #module_vis mod #fn_ident {
            #[allow(unused_imports)]
            use super::*;

            // First, so that a bad argument type is reported with this message first.
            const _: () = {
                #(#checks)*
            };

            /// The options given to `#[task]`.
            #[allow(dead_code, clippy::needless_update)]
            #vis const OPTIONS: #private::TaskOptions = #options_value;

            /// The task's wire name.
            #[allow(dead_code)]
            #vis fn name() -> &'static str {
                static NAME: ::std::sync::OnceLock<::std::string::String> =
                    ::std::sync::OnceLock::new();
                NAME.get_or_init(|| #private::task_name(::core::module_path!(), #explicit_name))
            }

            /// A signature of the call, to set options (`countdown`, `queue`, ...) before
            /// `apply_async`.
            #[allow(dead_code)]
            #allow_many
            #vis fn s(#params) -> #krate::task::Signature<#output_ty> {
                #krate::task::Signature::with_output(self::name()) #(.arg(#arg_idents))*
            }

            /// The same as `s`.
            #[allow(dead_code)]
            #allow_many
            #vis fn signature(#params) -> #krate::task::Signature<#output_ty> {
                self::s(#(#arg_idents),*)
            }

            /// Sends the task with default options through the installed app.
            #[allow(dead_code)]
            #allow_many
            #vis async fn delay(#params) -> #krate::Result<#krate::task::AsyncResult<#output_ty>> {
                self::s(#(#arg_idents),*).apply_async().await
            }

            #run

            #private::inventory::submit! {
                #private::TaskRegistration {
                    name: #explicit_name,
                    module_path: ::core::module_path!(),
                    options: OPTIONS,
                    runner: #runner,
                }
            }

        }
    }
}

/// The `TaskOptions` constant: only the options given, then `..DEFAULT`.
fn options_tokens(options: &TaskAttr, private: &TokenStream) -> TokenStream {
    fn some<T: ToTokens>(value: T) -> TokenStream {
        quote!(::core::option::Option::Some(#value))
    }
    fn float(value: f64) -> proc_macro2::Literal {
        proc_macro2::Literal::f64_unsuffixed(value)
    }
    let mut fields = Vec::new();
    let mut field = |name: &str, value: TokenStream| {
        let name = Ident::new(name, Span::call_site());
        fields.push(quote!(#name: #value));
    };
    if let Some(queue) = &options.queue {
        field("queue", some(queue));
    }
    if let Some(priority) = options.priority {
        field(
            "priority",
            some(proc_macro2::Literal::u8_unsuffixed(priority)),
        );
    }
    if let Some(max) = options.max_retries {
        field(
            "max_retries",
            some(proc_macro2::Literal::u32_unsuffixed(max)),
        );
    }
    if let Some(delay) = options.default_retry_delay {
        field("default_retry_delay", some(float(delay)));
    }
    if let Some(backoff) = options.retry_backoff {
        match backoff {
            Some(factor) => field("retry_backoff", some(float(factor))),
            None => field("retry_backoff", quote!(::core::option::Option::None)),
        }
    }
    if let Some(max) = options.retry_backoff_max {
        field("retry_backoff_max", some(float(max)));
    }
    if let Some(jitter) = options.retry_jitter {
        field("retry_jitter", some(jitter));
    }
    if let Some(autoretry) = options.autoretry {
        field("autoretry", quote!(#autoretry));
    }
    if let Some(ignore) = options.ignore_result {
        field("ignore_result", some(ignore));
    }
    if let Some(late) = options.acks_late {
        field("acks_late", some(late));
    }
    if let Some(limit) = options.time_limit {
        field("time_limit", some(float(limit)));
    }
    if let Some(limit) = options.soft_time_limit {
        field("soft_time_limit", some(float(limit)));
    }
    if let Some(rate) = &options.rate_limit {
        field("rate_limit", some(rate));
    }
    quote! {
        #private::TaskOptions { #(#fields,)* ..#private::TaskOptions::DEFAULT }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expansion as one normalized string (tokens separated by single spaces).
    fn expanded(attr: TokenStream, item: TokenStream) -> String {
        let item = syn::parse2::<ItemFn>(item).expect("test input is a function");
        match expand(attr, item) {
            Ok(tokens) => tokens.to_string(),
            Err(error) => panic!("unexpected error: {error}"),
        }
    }

    /// Every error message of a failed expansion.
    fn errors(attr: TokenStream, item: TokenStream) -> Vec<String> {
        let item = syn::parse2::<ItemFn>(item).expect("test input is a function");
        match expand(attr, item) {
            Ok(tokens) => panic!("expected an error, got {tokens}"),
            Err(error) => error.into_iter().map(|error| error.to_string()).collect(),
        }
    }

    fn contains(haystack: &str, needle: TokenStream) {
        let needle = needle.to_string();
        assert!(
            haystack.contains(&needle),
            "expected\n  {needle}\nin\n  {haystack}"
        );
    }

    fn lacks(haystack: &str, needle: TokenStream) {
        let needle = needle.to_string();
        assert!(
            !haystack.contains(&needle),
            "did not expect\n  {needle}\nin\n  {haystack}"
        );
    }

    #[test]
    fn async_task_with_result() {
        let out = expanded(
            quote!(queue = "emails", max_retries = 5),
            quote! {
                pub async fn send_welcome(user_id: i64, note: String) -> TaskResult<()> { Ok(()) }
            },
        );
        // The function comes first, unchanged.
        assert!(out.starts_with(
            &quote!(
                pub async fn send_welcome(user_id: i64, note: String) -> TaskResult<()> {
                    Ok(())
                }
            )
            .to_string()
        ));
        contains(&out, quote!(pub mod send_welcome));
        contains(
            &out,
            quote!(
                use super::*;
            ),
        );
        contains(
            &out,
            quote!(
                pub const OPTIONS: ::celery_web::__private::TaskOptions =
                    ::celery_web::__private::TaskOptions {
                        queue: ::core::option::Option::Some("emails"),
                        max_retries: ::core::option::Option::Some(5),
                        ..::celery_web::__private::TaskOptions::DEFAULT
                    };
            ),
        );
        contains(
            &out,
            quote!(
                pub fn s(user_id: i64, note: String) -> ::celery_web::task::Signature<()> {
                    ::celery_web::task::Signature::with_output(self::name())
                        .arg(user_id)
                        .arg(note)
                }
            ),
        );
        contains(
            &out,
            quote!(pub async fn delay(user_id: i64, note: String)
                -> ::celery_web::Result<::celery_web::task::AsyncResult<()>>),
        );
        contains(
            &out,
            quote!(let __arg0: i64 = __args.take(0usize, "user_id")?;
                   let __arg1: String = __args.take(1usize, "note")?;
                   __args.finish()?;
                   ::celery_web::__private::output_from_result(super::send_welcome(__arg0, __arg1).await)),
        );
        assert!(
            out.contains(":: std :: boxed :: Box :: pin (async move {"),
            "{out}"
        );
        contains(&out, quote!(-> ::celery_web::__private::BoxFuture<'static,));
        contains(
            &out,
            quote!(runner: ::celery_web::__private::TaskRunner::Async(__run),),
        );
        contains(&out, quote!(name: ::core::option::Option::None,));
        contains(
            &out,
            quote!(::celery_web::__private::task_name(
                ::core::module_path!(),
                ::core::option::Option::None
            )),
        );
        contains(
            &out,
            quote!(
                const _: () = {
                    ::celery_web::__private::assert_task_argument::<i64>();
                    ::celery_web::__private::assert_task_argument::<String>();
                };
            ),
        );
        contains(
            &out,
            quote!(#[doc = "Celery task for [`fn@send_welcome`]: `delay`, `s`, `name`."]),
        );
    }

    #[test]
    fn sync_task_returning_a_value() {
        let out = expanded(
            quote!(),
            quote!(
                fn add(x: i64, y: i64) -> i64 {
                    x + y
                }
            ),
        );
        contains(
            &out,
            quote!(runner: ::celery_web::__private::TaskRunner::Blocking(__run),),
        );
        contains(
            &out,
            quote!(::celery_web::__private::output_from_value(super::add(
                __arg0, __arg1
            ))),
        );
        contains(&out, quote!(-> ::celery_web::task::Signature<i64>));
        lacks(&out, quote!(Box::pin));
        lacks(&out, quote!(super::add(__arg0, __arg1).await));
        // Private function: private module, items visible to the function's module.
        assert!(out.contains("mod add {"), "{out}");
        lacks(&out, quote!(pub mod add));
        contains(&out, quote!(pub(super) fn s(x: i64, y: i64)));
        contains(&out, quote!(pub(super) const OPTIONS));
        contains(
            &out,
            quote!(
                const OPTIONS: ::celery_web::__private::TaskOptions =
                    ::celery_web::__private::TaskOptions {
                        ..::celery_web::__private::TaskOptions::DEFAULT
                    };
            ),
        );
    }

    #[test]
    fn no_return_type_is_unit_and_no_arguments_need_no_mut() {
        let out = expanded(
            quote!(),
            quote!(
                async fn ping() {}
            ),
        );
        contains(&out, quote!(-> ::celery_web::task::Signature<()>));
        contains(
            &out,
            quote!(__args.finish()?; ::celery_web::__private::output_from_value(super::ping().await)),
        );
        contains(
            &out,
            quote!(fn __run(_: ::celery_web::__private::TaskContext, __args: ::celery_web::__private::TaskArgs)),
        );
        contains(
            &out,
            quote!(
                const _: () = {};
            ),
        );
    }

    #[test]
    fn result_types_by_last_segment() {
        let out = expanded(
            quote!(),
            quote!(
                fn a() -> std::io::Result<String> {
                    todo!()
                }
            ),
        );
        contains(&out, quote!(Signature<String>));
        contains(&out, quote!(output_from_result));
        let out = expanded(
            quote!(),
            quote!(
                fn a() -> Result<Vec<u8>, MyError> {
                    todo!()
                }
            ),
        );
        assert!(out.contains("Signature < Vec < u8 > >"), "{out}");
        let out = expanded(
            quote!(),
            quote!(
                fn a() -> Option<u8> {
                    todo!()
                }
            ),
        );
        assert!(out.contains("Signature < Option < u8 > >"), "{out}");
        contains(&out, quote!(output_from_value));
    }

    #[test]
    fn bind_passes_the_context_first() {
        let out = expanded(
            quote!(bind),
            quote!(
                async fn flaky(ctx: TaskContext, n: i64) -> TaskResult<i64> {
                    Ok(n)
                }
            ),
        );
        contains(
            &out,
            quote!(fn s(n: i64) -> ::celery_web::task::Signature<i64>),
        );
        contains(&out, quote!(let __arg0: i64 = __args.take(0usize, "n")?;));
        contains(&out, quote!(super::flaky(__ctx, __arg0).await));
        contains(
            &out,
            quote!(fn __run(__ctx: ::celery_web::__private::TaskContext, mut __args: ::celery_web::__private::TaskArgs)),
        );
        lacks(&out, quote!(assert_task_argument::<TaskContext>));
    }

    #[test]
    fn visibility_moves_one_level_down() {
        let cases = [
            (quote!(pub), quote!(pub mod t), quote!(pub fn s)),
            (
                quote!(pub(crate)),
                quote!(pub(crate) mod t),
                quote!(pub(crate) fn s),
            ),
            (
                quote!(pub(super)),
                quote!(pub(super) mod t),
                quote!(pub(in super::super) fn s),
            ),
            (
                quote!(pub(self)),
                quote!(pub(self) mod t),
                quote!(pub(super) fn s),
            ),
            (
                quote!(pub(in crate::a)),
                quote!(pub(in crate::a) mod t),
                quote!(pub(in crate::a) fn s),
            ),
            (
                quote!(pub(in super::a)),
                quote!(pub(in super::a) mod t),
                quote!(pub(in super::super::a) fn s),
            ),
        ];
        for (vis, module, item) in cases {
            let out = expanded(quote!(), quote!(#vis fn t() {}));
            contains(&out, module);
            contains(&out, item);
        }
    }

    #[test]
    fn every_option() {
        let out = expanded(
            quote!(
                name = "math.add",
                queue = "math",
                priority = 9,
                max_retries = 0,
                default_retry_delay = 2,
                retry_backoff = true,
                retry_backoff_max = 60.5,
                retry_jitter = false,
                autoretry,
                ignore_result = false,
                acks_late,
                time_limit = 30,
                soft_time_limit = 0.5,
                rate_limit = "10/s",
                crate = "celery"
            ),
            quote!(
                fn add(x: i64) -> i64 {
                    x
                }
            ),
        );
        let some = quote!(::core::option::Option::Some);
        contains(
            &out,
            quote!(celery::__private::TaskOptions {
                queue: #some("math"),
                priority: #some(9),
                max_retries: #some(0),
                default_retry_delay: #some(2.0),
                retry_backoff: #some(1.0),
                retry_backoff_max: #some(60.5),
                retry_jitter: #some(false),
                autoretry: true,
                ignore_result: #some(false),
                acks_late: #some(true),
                time_limit: #some(30.0),
                soft_time_limit: #some(0.5),
                rate_limit: #some("10/s"),
                ..celery::__private::TaskOptions::DEFAULT
            }),
        );
        contains(&out, quote!(name: #some("math.add"),));
        contains(
            &out,
            quote!(celery::__private::task_name(::core::module_path!(), #some("math.add"))),
        );
        contains(&out, quote!(celery::task::Signature::with_output));
        lacks(&out, quote!(celery_web));

        let out = expanded(
            quote!(retry_backoff = false, autoretry = false, ignore_result),
            quote!(
                fn t() {}
            ),
        );
        contains(&out, quote!(retry_backoff: ::core::option::Option::None,));
        contains(&out, quote!(autoretry: false,));
        contains(
            &out,
            quote!(ignore_result: ::core::option::Option::Some(true),),
        );
        let out = expanded(
            quote!(retry_backoff = 3),
            quote!(
                fn t() {}
            ),
        );
        contains(
            &out,
            quote!(retry_backoff: ::core::option::Option::Some(3.0),),
        );
    }

    #[test]
    fn argument_names_and_types() {
        let out = expanded(
            quote!(),
            quote!(
                fn t(mut count: u32, r#type: String, other: super::models::Row) {}
            ),
        );
        contains(
            &out,
            quote!(fn s(count: u32, r#type: String, other: super::super::models::Row)),
        );
        contains(&out, quote!(.arg(count).arg(r#type).arg(other)));
        contains(&out, quote!(__args.take(1usize, "type")));
        contains(
            &out,
            quote!(assert_task_argument::<super::super::models::Row>();),
        );
        let module = out.split_once("mod t").expect("a module").1;
        lacks(module, quote!(mut count));
        // The function itself is untouched.
        assert!(out.starts_with(
            &quote!(
                fn t(mut count: u32, r#type: String, other: super::models::Row) {}
            )
            .to_string()
        ));
        // `crate::` and `self::` paths need no change; `super::super::` is not doubled twice.
        let out = expanded(
            quote!(),
            quote!(
                fn t(a: crate::A, b: super::super::B) -> super::C {
                    todo!()
                }
            ),
        );
        contains(
            &out,
            quote!(fn s(a: crate::A, b: super::super::super::B) -> ::celery_web::task::Signature<super::super::C>),
        );
    }

    #[test]
    fn cfg_attributes_apply_to_the_module() {
        let out = expanded(
            quote!(),
            quote! {
                /// Docs.
                #[cfg(feature = "x")]
                #[inline]
                fn t() {}
            },
        );
        contains(
            &out,
            quote!(#[cfg(feature = "x")] #[doc = "Celery task for [`fn@t`]: `delay`, `s`, `name`."] mod t),
        );
    }

    #[test]
    fn option_errors() {
        assert_eq!(
            errors(
                quote!(queue = "a", queue = "b"),
                quote!(
                    fn t() {}
                )
            ),
            ["`queue` specified more than once"]
        );
        assert_eq!(
            errors(
                quote!(bind, bind),
                quote!(
                    fn t(ctx: TaskContext) {}
                )
            ),
            ["`bind` specified more than once"]
        );
        let unknown = errors(
            quote!(queues = "a"),
            quote!(
                fn t() {}
            ),
        );
        assert_eq!(unknown.len(), 1);
        assert!(
            unknown[0].starts_with(
                "unknown `#[task]` option `queues`, expected one of: `name`, `queue`, `priority`"
            ),
            "{unknown:?}"
        );
        assert!(unknown[0].contains("`bind`, `crate`"), "{unknown:?}");
        let renamed = errors(
            quote!(autoretry_for = "x"),
            quote!(
                fn t() {}
            ),
        );
        assert!(
            renamed[0].ends_with("did you mean `autoretry`?"),
            "{renamed:?}"
        );
        assert_eq!(
            errors(
                quote!(priority = 10),
                quote!(
                    fn t() {}
                )
            ),
            ["`priority` must be 0 (lowest) to 9 (highest), got 10"]
        );
        assert_eq!(
            errors(
                quote!(priority = -1),
                quote!(
                    fn t() {}
                )
            ),
            ["`priority` must be 0 (lowest) to 9 (highest), got -1"]
        );
        assert_eq!(
            errors(
                quote!(max_retries = 5000000000),
                quote!(
                    fn t() {}
                )
            ),
            ["`max_retries` must be 0 to 4294967295, got 5000000000"]
        );
        assert_eq!(
            errors(
                quote!(time_limit = 0),
                quote!(
                    fn t() {}
                )
            ),
            ["`time_limit` must be a number of seconds greater than 0"]
        );
        assert_eq!(
            errors(
                quote!(default_retry_delay = -2.5),
                quote!(
                    fn t() {}
                )
            ),
            ["`default_retry_delay` must be a number of seconds 0 or more"]
        );
        assert_eq!(
            errors(
                quote!(queue),
                quote!(
                    fn t() {}
                )
            ),
            ["`queue` needs a value: a string"]
        );
        assert_eq!(
            errors(
                quote!(queue = 3),
                quote!(
                    fn t() {}
                )
            ),
            ["`queue` expects a string, like `queue = \"...\"`"]
        );
        assert_eq!(
            errors(
                quote!(name = ""),
                quote!(
                    fn t() {}
                )
            ),
            ["`name` must not be empty"]
        );
        assert_eq!(
            errors(
                quote!(retry_jitter),
                quote!(
                    fn t() {}
                )
            ),
            ["`retry_jitter` needs a value: `true` or `false`"]
        );
        assert_eq!(
            errors(
                quote!(acks_late = "yes"),
                quote!(
                    fn t() {}
                )
            ),
            ["`acks_late` expects `true` or `false`"]
        );
        assert_eq!(
            errors(
                quote!(bind = true),
                quote!(
                    fn t(ctx: TaskContext) {}
                )
            ),
            ["`bind` takes no value: write `#[task(bind)]`"]
        );
        assert_eq!(
            errors(
                quote!(crate = "not a path"),
                quote!(
                    fn t() {}
                )
            ),
            ["`crate` must name a path, like `crate = \"my_celery\"`"]
        );
        assert_eq!(
            errors(
                quote!(queue("a")),
                quote!(
                    fn t() {}
                )
            ),
            ["`queue` is written `queue = ...`, with a string"]
        );
        // Several problems at once are all reported.
        assert_eq!(
            errors(
                quote!(priority = 10, queue = 1),
                quote!(
                    fn t<T>(x: &T) {}
                )
            ),
            [
                "`priority` must be 0 (lowest) to 9 (highest), got 10",
                "`queue` expects a string, like `queue = \"...\"`",
                "a task cannot be generic: the worker builds its arguments from a JSON message, \
                 so every type must be concrete",
            ]
        );
    }

    #[test]
    fn function_errors() {
        let generic = "a task cannot be generic: the worker builds its arguments from a JSON \
                       message, so every type must be concrete";
        assert_eq!(
            errors(
                quote!(),
                quote!(
                    fn t<T: Serialize>(x: T) {}
                )
            ),
            [generic]
        );
        assert_eq!(
            errors(
                quote!(),
                quote!(
                    fn t<const N: usize>() {}
                )
            ),
            [generic]
        );
        assert!(errors(
            quote!(),
            quote!(
                fn t<'a>(x: Cow<'a, str>) {}
            )
        )[0]
        .starts_with("a task cannot have lifetime parameters"));
        assert!(errors(
            quote!(),
            quote!(
                fn t()
                where
                    i32: Copy,
                {
                }
            )
        )[0]
        .starts_with("a task cannot have a `where` clause"));
        assert!(errors(
            quote!(),
            quote!(
                fn run(&self) {}
            )
        )[0]
        .starts_with("`#[task]` goes on a free function, not a method"));
        assert!(errors(
            quote!(),
            quote!(
                unsafe fn t() {}
            )
        )[0]
        .starts_with("a task cannot be an `unsafe fn`"));
        assert!(errors(
            quote!(),
            quote!(
                fn t() -> impl Serialize {
                    1
                }
            )
        )[0]
        .starts_with("a task cannot return `impl Trait`"));
        let pattern = "a task parameter must be a plain name, like `user_id: i64`: the name is \
                       also the keyword argument that callers (and Python) may use";
        assert_eq!(
            errors(
                quote!(),
                quote!(
                    fn t((a, b): (i64, i64)) {}
                )
            ),
            [pattern]
        );
        assert_eq!(
            errors(
                quote!(),
                quote!(
                    fn t(_: i64) {}
                )
            ),
            [pattern]
        );
        assert_eq!(
            errors(
                quote!(),
                quote!(
                    fn t(ref a: i64) {}
                )
            ),
            [pattern]
        );
        let owned = "task arguments travel as JSON and must be owned serde types: use `String` \
                     for `&str`, `Vec<T>` for `&[T]`, a concrete type for `impl Trait`";
        assert_eq!(
            errors(
                quote!(),
                quote!(
                    fn t(a: &str) {}
                )
            ),
            [owned]
        );
        assert_eq!(
            errors(
                quote!(),
                quote!(
                    fn t(a: Vec<&'static str>) {}
                )
            ),
            [owned]
        );
        assert_eq!(
            errors(
                quote!(),
                quote!(
                    fn t(a: impl Serialize) {}
                )
            ),
            [owned]
        );
        assert_eq!(
            errors(
                quote!(),
                quote!(
                    fn t(a: (i64, Option<&[u8]>)) {}
                )
            ),
            [owned]
        );
        // The context of a bound task is not a task argument, but it is taken by value.
        assert!(errors(
            quote!(bind),
            quote!(
                fn t(ctx: &TaskContext) {}
            )
        )[0]
        .starts_with("a bound task receives its context by value"));
        assert_eq!(
            errors(
                quote!(bind),
                quote!(
                    fn t() {}
                )
            ),
            [
                "`bind` passes the task's `TaskContext` as the first parameter, but `t` has no \
              parameters: add `ctx: TaskContext`"
            ]
        );
        // Two bad parameters: two errors.
        assert_eq!(
            errors(
                quote!(),
                quote!(
                    fn t(a: &str, b: &[u8]) {}
                )
            ),
            [owned, owned]
        );
    }
}
