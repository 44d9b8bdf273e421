//! The executor: walks a parsed tree against a [`Value`], with fixed step, output and depth budgets.

use crate::funcs::{self, Ctx, FuncError};
use crate::parse::{Arg, Cmd, Node, Pipe, Tree, line_col};
use crate::value::Value;
use crate::{BudgetKind, ExecError, Extra, FuncMap, Limits};

enum Flow {
    Normal,
    Break,
    Continue,
}

/// Where an error happened: a byte offset and the source form of the node.
struct At {
    pos: usize,
    context: String,
}

pub(crate) struct Exec<'a> {
    tree: &'a Tree,
    parse_name: &'a str,
    text: &'a str,
    current: String,
    vars: Vec<(String, Value)>,
    depth: usize,
    funcs: &'a FuncMap,
    pub(crate) ctx: Ctx<'a>,
}

type R<T> = Result<T, ExecError>;

impl<'a> Exec<'a> {
    pub(crate) fn new(
        tree: &'a Tree,
        parse_name: &'a str,
        text: &'a str,
        funcs: &'a FuncMap,
        limits: &'a Limits,
    ) -> Self {
        Exec {
            tree,
            parse_name,
            text,
            current: parse_name.to_string(),
            vars: Vec::new(),
            depth: 0,
            funcs,
            ctx: Ctx::new(limits),
        }
    }

    pub(crate) fn run(mut self, data: &Value) -> R<String> {
        self.vars.push(("$".into(), data.clone()));
        let root = &self.tree.root;
        self.walk_list(data, root)?;
        Ok(std::mem::take(&mut self.ctx.out))
    }

    fn error(
        &self,
        at: Option<&At>,
        message: impl Into<String>,
        budget: Option<BudgetKind>,
    ) -> ExecError {
        let (line, column, context) = match at {
            Some(a) => {
                let (l, c) = line_col(self.text, a.pos);
                (l, c, Some(a.context.clone()))
            }
            None => (0, 0, None),
        };
        ExecError {
            name: self.parse_name.to_string(),
            template: self.current.clone(),
            line,
            column,
            context,
            message: message.into(),
            budget,
        }
    }

    fn at_arg(arg: &Arg) -> At {
        At {
            pos: arg.pos(),
            context: arg.to_string(),
        }
    }

    fn at_pipe(pipe: &Pipe) -> At {
        At {
            pos: pipe.pos,
            context: pipe.to_string(),
        }
    }

    fn step(&mut self, at: Option<&At>) -> R<()> {
        self.ctx.steps += 1;
        if self.ctx.steps > self.ctx.limits.max_steps {
            let msg = format!(
                "exceeded the budget of {} evaluation steps",
                self.ctx.limits.max_steps
            );
            return Err(self.error(at, msg, Some(BudgetKind::Steps)));
        }
        Ok(())
    }

    fn write(&mut self, s: &str, at: Option<&At>) -> R<()> {
        if self.ctx.out.len() + s.len() > self.ctx.limits.max_output {
            let msg = format!(
                "output exceeds the budget of {} bytes",
                self.ctx.limits.max_output
            );
            return Err(self.error(at, msg, Some(BudgetKind::Output)));
        }
        self.ctx.out.push_str(s);
        Ok(())
    }

    fn walk_list(&mut self, dot: &Value, list: &[Node]) -> R<Flow> {
        for n in list {
            match self.walk(dot, n)? {
                Flow::Normal => {}
                f => return Ok(f),
            }
        }
        Ok(Flow::Normal)
    }

    fn walk(&mut self, dot: &Value, node: &Node) -> R<Flow> {
        self.step(None)?;
        match node {
            Node::Text(t) => {
                self.write(t, None)?;
                Ok(Flow::Normal)
            }
            Node::Action { pipe } => {
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    let at = Self::at_pipe(pipe);
                    let room = self
                        .ctx
                        .limits
                        .max_output
                        .saturating_sub(self.ctx.out.len());
                    let s = match v {
                        Value::Missing => Some("<no value>".to_string()),
                        v => crate::gofmt::sprint_v_bounded(&v, room),
                    };
                    match s {
                        Some(s) => self.write(&s, Some(&at))?,
                        None => {
                            let msg = format!(
                                "output exceeds the budget of {} bytes",
                                self.ctx.limits.max_output
                            );
                            return Err(self.error(Some(&at), msg, Some(BudgetKind::Output)));
                        }
                    }
                }
                Ok(Flow::Normal)
            }
            Node::If {
                pipe,
                list,
                else_list,
            }
            | Node::With {
                pipe,
                list,
                else_list,
            } => {
                let is_with = matches!(node, Node::With { .. });
                let mark = self.vars.len();
                let r = (|| {
                    let v = self.eval_pipeline(dot, pipe)?;
                    if v.truth() {
                        if is_with {
                            self.walk_list(&v, list)
                        } else {
                            self.walk_list(dot, list)
                        }
                    } else if let Some(e) = else_list {
                        self.walk_list(dot, e)
                    } else {
                        Ok(Flow::Normal)
                    }
                })();
                self.vars.truncate(mark);
                r
            }
            Node::Range {
                pipe,
                list,
                else_list,
            } => {
                let mark = self.vars.len();
                let r = self.walk_range(dot, pipe, list, else_list.as_deref());
                self.vars.truncate(mark);
                r
            }
            Node::Template { pos, name, pipe } => {
                let at = At {
                    pos: *pos,
                    context: format!("{{{{template {}}}}}", crate::gofmt::quote(name)),
                };
                let new_dot = match pipe {
                    Some(p) => self.eval_pipeline(dot, p)?,
                    None => Value::Missing,
                };
                self.call_template(name, &new_dot, &at)?;
                Ok(Flow::Normal)
            }
            Node::Break => Ok(Flow::Break),
            Node::Continue => Ok(Flow::Continue),
        }
    }

    /// Executes the `define`d template `name` with `dot`, writing to the current output.
    fn call_template(&mut self, name: &str, dot: &Value, at: &At) -> R<()> {
        let tree = self.tree;
        let Some(body) = tree.defines.get(name) else {
            return Err(self.error(
                Some(at),
                format!("template {} not defined", crate::gofmt::quote(name)),
                None,
            ));
        };
        if self.depth >= self.ctx.limits.max_depth {
            let msg = format!(
                "exceeded maximum template depth ({})",
                self.ctx.limits.max_depth
            );
            return Err(self.error(Some(at), msg, Some(BudgetKind::Depth)));
        }
        let saved_vars = std::mem::replace(&mut self.vars, vec![("$".into(), dot.clone())]);
        let saved_name = std::mem::replace(&mut self.current, name.to_string());
        self.depth += 1;
        let r = self.walk_list(dot, body);
        self.depth -= 1;
        self.vars = saved_vars;
        self.current = saved_name;
        r.map(|_| ())
    }

    /// Helm's `include NAME DOT`: the output of a `define`d template as a string.
    fn include(&mut self, fname: &str, argv: &[Value], at: &At) -> R<Value> {
        let (name, dot) = match argv {
            [Value::Str(n), d] => (n.clone(), d.clone()),
            [Value::Str(n)] => (n.clone(), Value::Missing),
            _ => {
                return Err(self.error(
                    Some(at),
                    format!("wrong number or type of args for {fname}: want a template name and an optional value"),
                    None,
                ));
            }
        };
        let outer = std::mem::take(&mut self.ctx.out);
        let r = self.call_template(&name, &dot, at);
        let inner = std::mem::replace(&mut self.ctx.out, outer);
        r?;
        Ok(Value::str(inner))
    }

    fn walk_range(
        &mut self,
        dot: &Value,
        pipe: &Pipe,
        list: &[Node],
        else_list: Option<&[Node]>,
    ) -> R<Flow> {
        let val = self.eval_pipeline(dot, pipe)?;
        let mark = self.vars.len();
        let ndecl = pipe.decl.len();
        let mut ran = false;
        let items: Vec<(Value, Value)> = match &val {
            Value::List(l) => l
                .items
                .iter()
                .enumerate()
                .map(|(i, v)| (Value::Int(i as i64), v.clone()))
                .collect(),
            Value::Map(m) => m.entries().to_vec(),
            Value::Int(n) => {
                if ndecl > 1 {
                    let msg = format!("can't use {n} to iterate over more than one variable");
                    return Err(self.error(Some(&Self::at_pipe(pipe)), msg, None));
                }
                // Bounded by the step budget: each iteration costs a step.
                let n = (*n).max(0).min(self.ctx.limits.max_steps as i64);
                (0..n).map(|i| (Value::Int(i), Value::Int(i))).collect()
            }
            Value::Missing | Value::Nil => Vec::new(),
            other => {
                let msg = format!(
                    "range can't iterate over {}",
                    crate::gofmt::sprint_v_brief(other)
                );
                return Err(self.error(Some(&Self::at_pipe(pipe)), msg, None));
            }
        };
        for (index, elem) in items {
            ran = true;
            self.step(Some(&Self::at_pipe(pipe)))?;
            if ndecl > 0 {
                if pipe.is_assign {
                    let first = if ndecl > 1 {
                        index.clone()
                    } else {
                        elem.clone()
                    };
                    self.set_var(&pipe.decl[0], first);
                    if ndecl > 1 {
                        self.set_var(&pipe.decl[1], elem.clone());
                    }
                } else {
                    let n = self.vars.len();
                    self.vars[n - 1].1 = elem.clone();
                    if ndecl > 1 {
                        self.vars[n - 2].1 = index.clone();
                    }
                }
            }
            let flow = self.walk_list(&elem, list);
            self.vars.truncate(mark);
            match flow? {
                Flow::Break => return Ok(Flow::Normal),
                Flow::Continue | Flow::Normal => {}
            }
        }
        if !ran && let Some(e) = else_list {
            return self.walk_list(dot, e);
        }
        Ok(Flow::Normal)
    }

    fn set_var(&mut self, name: &str, v: Value) {
        if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            slot.1 = v;
        }
    }

    fn var_value(&self, name: &str, at: &At) -> R<Value> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => Err(self.error(Some(at), format!("undefined variable: {name}"), None)),
        }
    }

    fn eval_pipeline(&mut self, dot: &Value, pipe: &Pipe) -> R<Value> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value)?);
        }
        let value = value.unwrap_or(Value::Missing);
        for name in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, value.clone());
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn not_a_function(&self, cmd: &Cmd, final_: &Option<Value>) -> R<()> {
        if cmd.args.len() > 1 || final_.is_some() {
            let at = Self::at_arg(&cmd.args[0]);
            return Err(self.error(
                Some(&at),
                format!("can't give argument to non-function {}", cmd.args[0]),
                None,
            ));
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Value, cmd: &Cmd, final_: Option<Value>) -> R<Value> {
        let first = &cmd.args[0];
        self.step(Some(&Self::at_arg(first)))?;
        match first {
            Arg::Field { idents, .. } => {
                self.eval_field_chain(dot, dot.clone(), first, idents, &cmd.args, final_)
            }
            Arg::Chain { node, idents, .. } => {
                let recv = self.eval_arg(dot, node)?;
                self.eval_field_chain(dot, recv, first, idents, &cmd.args, final_)
            }
            Arg::Ident { name, .. } => self.eval_function(dot, name, first, &cmd.args, final_),
            Arg::Pipe(p) => {
                self.not_a_function(cmd, &final_)?;
                self.eval_pipeline(dot, p)
            }
            Arg::Var { name, idents, .. } => {
                let v = self.var_value(name, &Self::at_arg(first))?;
                if idents.is_empty() {
                    self.not_a_function(cmd, &final_)?;
                    return Ok(v);
                }
                self.eval_field_chain(dot, v, first, idents, &cmd.args, final_)
            }
            Arg::Nil(_) => {
                Err(self.error(Some(&Self::at_arg(first)), "nil is not a command", None))
            }
            _ => {
                self.not_a_function(cmd, &final_)?;
                self.eval_arg(dot, first)
            }
        }
    }

    fn eval_arg(&mut self, dot: &Value, arg: &Arg) -> R<Value> {
        match arg {
            Arg::Dot(_) => Ok(dot.clone()),
            Arg::Nil(_) => Ok(Value::Nil),
            Arg::Bool(_, b) => Ok(Value::Bool(*b)),
            Arg::Number { value, .. } => Ok(value.clone()),
            Arg::Str { value, .. } => Ok(Value::Str(value.clone())),
            Arg::Field { idents, .. } => self.eval_field_chain(
                dot,
                dot.clone(),
                arg,
                idents,
                std::slice::from_ref(arg),
                None,
            ),
            Arg::Var { name, idents, .. } => {
                let v = self.var_value(name, &Self::at_arg(arg))?;
                if idents.is_empty() {
                    return Ok(v);
                }
                self.eval_field_chain(dot, v, arg, idents, std::slice::from_ref(arg), None)
            }
            Arg::Pipe(p) => self.eval_pipeline(dot, p),
            Arg::Ident { name, .. } => {
                self.eval_function(dot, name, arg, std::slice::from_ref(arg), None)
            }
            Arg::Chain { node, idents, .. } => {
                let recv = self.eval_arg(dot, node)?;
                self.eval_field_chain(dot, recv, arg, idents, std::slice::from_ref(arg), None)
            }
        }
    }

    fn eval_field_chain(
        &mut self,
        dot: &Value,
        mut receiver: Value,
        node: &Arg,
        idents: &[String],
        args: &[Arg],
        final_: Option<Value>,
    ) -> R<Value> {
        let n = idents.len();
        for ident in &idents[..n - 1] {
            receiver = self.eval_field(ident, node, false, receiver)?;
        }
        let has_args = args.len() > 1 || final_.is_some();
        let _ = dot;
        self.eval_field(&idents[n - 1], node, has_args, receiver)
    }

    fn eval_field(&mut self, name: &str, node: &Arg, has_args: bool, receiver: Value) -> R<Value> {
        let at = Self::at_arg(node);
        self.step(Some(&at))?;
        match &receiver {
            Value::Missing => Ok(Value::Missing),
            Value::Struct(s) => {
                let member = s
                    .fields
                    .iter()
                    .find(|f| &*f.name == name)
                    .map(|f| (f.kind, f.value.clone()));
                let member = member.or_else(|| {
                    s.get(name)
                        .map(|v| (crate::value::FieldKind::Plain, v.clone()))
                });
                match member {
                    Some((crate::value::FieldKind::Method, v)) => {
                        if has_args {
                            return Err(self.error(
                                Some(&at),
                                format!("wrong number of args for {name}: want 0 got more"),
                                None,
                            ));
                        }
                        Ok(v)
                    }
                    Some((_, v)) => {
                        if has_args {
                            return Err(self.error(
                                Some(&at),
                                format!("{name} has arguments but cannot be invoked as function"),
                                None,
                            ));
                        }
                        Ok(v)
                    }
                    None => Err(self.error(
                        Some(&at),
                        format!("can't evaluate field {name} in type {}", s.type_name),
                        None,
                    )),
                }
            }
            Value::Map(m) if m.has_string_keys() => {
                if has_args {
                    return Err(self.error(
                        Some(&at),
                        format!("{name} is not a method but has arguments"),
                        None,
                    ));
                }
                Ok(m.get(&Value::str(name)).cloned().unwrap_or(Value::Missing))
            }
            Value::Nil => Err(self.error(
                Some(&at),
                format!("nil pointer evaluating interface {{}}.{name}"),
                None,
            )),
            other => Err(self.error(
                Some(&at),
                format!("can't evaluate field {name} in type {}", other.type_name()),
                None,
            )),
        }
    }

    fn eval_function(
        &mut self,
        dot: &Value,
        name: &str,
        node: &Arg,
        args: &[Arg],
        final_: Option<Value>,
    ) -> R<Value> {
        let at = Self::at_arg(node);
        let rest = &args[1..];
        if name == "and" || name == "or" {
            if rest.is_empty() && final_.is_none() {
                return Err(self.error(
                    Some(&at),
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                    None,
                ));
            }
            let mut v = Value::Missing;
            for a in rest {
                v = self.eval_arg(dot, a)?;
                if v.truth() == (name == "or") {
                    return Ok(v);
                }
            }
            if let Some(f) = final_ {
                v = f;
            }
            return Ok(v);
        }
        let mut argv = Vec::with_capacity(rest.len() + 1);
        for a in rest {
            argv.push(self.eval_arg(dot, a)?);
        }
        if let Some(f) = final_ {
            argv.push(f);
        }
        match self.funcs.get(name) {
            Some(Extra::Include) => return self.include(name, &argv, &at),
            Some(Extra::Func(f)) => {
                let f = f.clone();
                let v = f(&argv).map_err(|m| {
                    self.error(Some(&at), format!("error calling {name}: {m}"), None)
                })?;
                return funcs::check_built(&mut self.ctx, v).map_err(|e| match e {
                    FuncError::Budget(kind, m) => self.error(Some(&at), m, Some(kind)),
                    FuncError::Arg(m) | FuncError::BadArg(m, _) | FuncError::Call(m) => {
                        self.error(Some(&at), m, None)
                    }
                });
            }
            None => {}
        }
        let Some(func) = funcs::lookup(name) else {
            return Err(self.error(
                Some(&at),
                format!("{name:?} is not a defined function"),
                None,
            ));
        };
        match funcs::call(&mut self.ctx, func, &argv) {
            Ok(v) => Ok(v),
            Err(FuncError::Arg(m)) => Err(self.error(Some(&at), m, None)),
            Err(FuncError::BadArg(m, addr)) => {
                // Point at the offending argument's node when it is one of the written arguments.
                let i = argv
                    .iter()
                    .position(|v| std::ptr::from_ref(v) as usize == addr);
                let node = i.and_then(|i| rest.get(i));
                let m = match node {
                    // Go checks constants against the parameter type before evaluating them.
                    Some(lit @ (Arg::Number { .. } | Arg::Str { .. } | Arg::Bool(..))) => {
                        literal_mismatch(&m, lit)
                    }
                    _ => m,
                };
                let at = node.map(Self::at_arg).unwrap_or(at);
                Err(self.error(Some(&at), m, None))
            }
            Err(FuncError::Call(m)) => {
                Err(self.error(Some(&at), format!("error calling {name}: {m}"), None))
            }
            Err(FuncError::Budget(kind, m)) => Err(self.error(Some(&at), m, Some(kind))),
        }
    }
}

/// Go's message for a constant of the wrong kind, e.g. `expected string; found 1`.
fn literal_mismatch(msg: &str, lit: &Arg) -> String {
    let expected = msg
        .strip_prefix("wrong type for value; expected ")
        .and_then(|r| r.split(';').next())
        .unwrap_or("");
    let kind = match expected {
        "int" => "integer",
        "float64" => "float",
        "" => return msg.to_string(),
        other => other,
    };
    format!("expected {kind}; found {lit}")
}
